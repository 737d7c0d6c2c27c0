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

from . import _state_file, running_server_url
from .embedded import EmbeddedServer


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
    print(f"cloudlab embedded emulator at {server.url} (Ctrl-C to stop)", flush=True)
    print(f"notebooks attach to it; in a shell: export AWS_ENDPOINT_URL={server.url}", flush=True)
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
