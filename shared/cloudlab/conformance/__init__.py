"""The conformance suite: does this backend behave the way the course says AWS does?

``python -m cloudlab conformance [--json]`` runs one small probe per claim the course teaches
(topics 01-04) against the current backend (``CLOUDLAB_BACKEND``) and prints a table: claim,
topic, expected (AWS's documented behaviour and where it is documented), observed, verdict.
Introduced in the README ("Which backend tells the truth"), which shows the tables of the
embedded backend and of LocalStack side by side; the README's LocalStack section says how
LocalStack runs here (``make test-localstack``), ``docs/localstack-notebooks.md`` how the
notebooks fare there. Probes of topic NN live in ``probes_storage`` (01, 02), ``probes_lambda``
(03) and ``probes_messaging`` (04).
"""

from .suite import CLAIMS, DIFFERS, HOLDS, NOT_SERVED, VERDICTS, Claim, Result, run, select

__all__ = ["CLAIMS", "Claim", "Result", "run", "select", "HOLDS", "DIFFERS", "NOT_SERVED", "VERDICTS"]
