"""``python -m cloudlab backend serve``: one embedded emulator for a whole JupyterLab session.

Introduced in the README's "one emulator for all notebooks" section. While it runs, its URL
is recorded in a state file (``~/.cache/cloudlab/serve.json``, or ``$CLOUDLAB_STATE_DIR``),
and ``cloudlab.use_backend()`` in any kernel attaches to it instead of starting its own, so
notebooks, terminals and Lambda functions all see the same buckets and queues.
"""

from __future__ import annotations

import json
import os
import signal
import sys

from . import DEFAULT_REGION, _state_file, running_server_url
from .embedded import EmbeddedServer


def shell_export_line(url: str, region: str = DEFAULT_REGION) -> str:
    """The one ``export`` line a shell needs: the endpoint, dummy credentials and the region.

    Introduced in the README's backends section. Exporting only ``AWS_ENDPOINT_URL`` is not
    enough: a tool that ignores it (the AWS CLI v1's ``sqs`` commands do) goes to the public
    endpoint with whatever credentials the shell has, which may be a student's real ones.
    With ``test``/``test`` (and no session token) such a call fails to authenticate.
    """
    return (f"export AWS_ENDPOINT_URL={url} AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test "
            f"AWS_DEFAULT_REGION={region}")


def main(port: int = 0) -> int:
    already = running_server_url()
    if already:
        print(f"an emulator is already being served at {already}; notebooks attach to it", file=sys.stderr)
        return 1
    server = EmbeddedServer(port=port)
    try:
        server.start()
    except OSError as error:
        print(f"cannot listen on 127.0.0.1:{port}: {error}", file=sys.stderr)
        return 1
    state = _state_file()
    state.parent.mkdir(parents=True, exist_ok=True)
    state.write_text(json.dumps({"url": server.url, "pid": os.getpid()}))
    print(f"cloudlab embedded emulator at {server.url} (Ctrl-C to stop); notebooks attach to it", flush=True)
    print("in a shell, paste this line (dummy credentials: a tool that bypasses the endpoint fails to "
          "authenticate instead of reaching your real account):", flush=True)
    print(shell_export_line(server.url), flush=True)
    print(f"tools that ignore AWS_ENDPOINT_URL (e.g. AWS CLI v1's sqs commands): add --endpoint-url {server.url}",
          flush=True)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        signal.pause()
    except (KeyboardInterrupt, SystemExit):
        pass
    finally:
        server.stop()
        try:
            if json.loads(state.read_text()).get("pid") == os.getpid():
                state.unlink()
        except (OSError, ValueError):
            pass
        print("emulator stopped", flush=True)
    return 0
