"""cloudlab: the helper package of the Cloud Patterns course.

Notebooks import it; nothing in it is pasted into a notebook. Each public function's
docstring names the notebook that introduces it.
"""

from .backend import Backend, BackendError, RealAWSBlocked, use_backend
from .backend import guard as _guard
from . import ledger as _ledger
from . import lambda_service as _lambda_service  # registers the local Lambda service with every embedded server

__version__ = "0.1.0"

_guard.install()
_ledger.install()

__all__ = ["Backend", "BackendError", "RealAWSBlocked", "use_backend", "__version__"]
