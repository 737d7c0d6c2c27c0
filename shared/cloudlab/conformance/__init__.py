"""The conformance suite: does this backend behave the way the course says AWS does?

``python -m cloudlab conformance [--json]`` runs one small probe per claim the course teaches
(topics 01-04) against the current backend (``CLOUDLAB_BACKEND``) and prints a table: claim,
topic, expected (AWS's documented behaviour and where it is documented), observed, verdict.
The README shows the tables of the embedded backend and of LocalStack side by side; see
``docs/localstack.md`` for how LocalStack runs here and ``make test-localstack``.
"""

from .suite import CLAIMS, DIFFERS, HOLDS, NOT_SERVED, VERDICTS, Claim, Result, run, select

__all__ = ["CLAIMS", "Claim", "Result", "run", "select", "HOLDS", "DIFFERS", "NOT_SERVED", "VERDICTS"]
