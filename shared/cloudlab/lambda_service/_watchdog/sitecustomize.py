"""Loaded at start-up by every execution environment (this folder is on its PYTHONPATH).

Notebook 03's environments are processes of their own session, so that a timeout can kill a
handler and whatever it started. If the process serving them dies without running its
``atexit`` hooks (``kill -9``, a crashed kernel), nobody would kill a handler that never
returns. This thread waits on a pipe whose other end only that process holds; when it closes,
the environment's whole process group goes. The handler never sees it.
"""

import os

_fd = os.environ.pop("CLOUDLAB_LAMBDA_WATCHDOG_FD", None)
if _fd is not None:
    import signal
    import threading

    def _watch(fd=int(_fd)):
        try:
            while os.read(fd, 1):
                pass
        except OSError:
            pass
        os.killpg(os.getpgrp(), signal.SIGKILL)

    threading.Thread(target=_watch, name="cloudlab-parent-watch", daemon=True).start()
