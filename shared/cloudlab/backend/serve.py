"""``python -m cloudlab backend serve``: one embedded emulator for a whole JupyterLab session.

Introduced in the README's "one emulator for all notebooks" section. While it runs, its URL
is recorded in a state file (``~/.cache/cloudlab/serve.json``, or ``$CLOUDLAB_STATE_DIR``),
and ``cloudlab.use_backend()`` in any kernel attaches to it instead of starting its own, so
notebooks, terminals and Lambda functions all see the same buckets and queues.

The state file is replaced in one step (written beside it, then renamed over it), so a
kernel starting meanwhile reads the old file, the new one, or none, never half of one.
``python -m cloudlab backend wait`` (used by ``make test``) waits for it to name a healthy
server, and says what went wrong when none comes.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

from . import DEFAULT_REGION, _state_file, running_server_url
from .embedded import EmbeddedServer, wait_until_healthy


def write_state(state: Path, url: str, pid: int) -> None:
    """Record the served URL in ``state`` atomically: a temporary file in the same folder,
    renamed over it (``os.replace`` is atomic within one file system)."""
    state.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=state.parent, prefix=f".{state.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "w") as file:
            file.write(json.dumps({"url": url, "pid": pid}))
        os.replace(temporary, state)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def wait_until_served(timeout: float = 60.0, state: Path | None = None,
                      still_starting: Callable[[], bool] | None = None) -> str:
    """The URL of the served emulator, once ``state`` (default: this environment's state file)
    names one that answers. Raises ``TimeoutError`` after ``timeout`` seconds, or at once when
    ``still_starting()`` says the server process has gone, with a message saying which."""
    state = state or _state_file()
    deadline = time.monotonic() + timeout
    while True:
        try:
            url = json.loads(state.read_text())["url"]
        except (OSError, ValueError, KeyError):
            url = None
        if url and wait_until_healthy(url, timeout=0.5):
            return url
        if still_starting is not None and not still_starting():
            raise TimeoutError(f"the emulator server exited before it served (no healthy URL in {state})")
        if time.monotonic() > deadline:
            found = f"it names {url}, which does not answer" if url else "it is missing or unreadable"
            raise TimeoutError(f"no emulator was served within {timeout:g} s: {state}: {found}")
        time.sleep(0.05)


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
    write_state(state, server.url, os.getpid())
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


def wait_main(timeout: float, pid: int | None = None) -> int:
    """``python -m cloudlab backend wait``: print the served URL, or why there is none (exit 1)."""
    def alive() -> bool:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            pass
        return True

    try:
        print(wait_until_served(timeout, still_starting=alive if pid else None))
    except TimeoutError as error:
        print(error, file=sys.stderr)
        return 1
    return 0
