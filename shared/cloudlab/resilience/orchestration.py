"""Step Functions state machines that really run, on a private emulator in this process.

Introduced in notebook 05 (orchestration). moto can interpret Amazon States Language (Pass,
Task, Choice, Wait, Parallel, Map, Retry, Catch) but only when its process-wide switch
``execute_state_machine`` is on; otherwise it records executions without running them. The
course's shared emulator leaves it off, so :func:`state_machine_endpoint` starts a private
embedded endpoint in this process with the switch on, for the length of a ``with`` block.
Task states call AWS services (``arn:aws:states:::dynamodb:putItem`` ...) on that same private
endpoint. Its state is this process's moto state, separate from a served emulator's.
"""

from __future__ import annotations

import os
from contextlib import contextmanager

__all__ = ["state_machine_endpoint"]


@contextmanager
def state_machine_endpoint():
    """Yield the URL of a private endpoint whose Step Functions run state machines.

    Introduced in notebook 05::

        with state_machine_endpoint() as url:
            sfn = boto3.client("stepfunctions", endpoint_url=url)
    """
    from ..backend import moto_compat
    from ..backend.embedded import EmbeddedServer

    settings = moto_compat.stepfunctions_settings()
    was_on, old_port = settings.get("execute_state_machine", False), os.environ.get("MOTO_PORT")
    server = EmbeddedServer().start()
    settings["execute_state_machine"] = True
    os.environ["MOTO_PORT"] = str(server.port)        # where moto's interpreter sends Task calls
    try:
        yield server.url
    finally:
        settings["execute_state_machine"] = was_on
        if old_port is None:
            os.environ.pop("MOTO_PORT", None)
        else:
            os.environ["MOTO_PORT"] = old_port
        server.stop()
