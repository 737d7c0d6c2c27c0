"""Labs: build student versions from masters, self-check, and grade submissions.

- ``markers``: read a master notebook's solution and test markers (``docs/authoring-labs.md``).
- ``build``: ``python -m cloudlab labs build | check``.
- ``check``: ``checker("NN_topic_lab")``, the student's ``check("q1")``; introduced in notebook 01's lab.
- ``runner``: runs one test case in a notebook namespace (for ``check`` and the grader).
- ``grader``: grades one submission in its own kernel and emulator.
- ``batch``: ``python -m cloudlab grade MASTER SUBMISSION... --out grades.csv``, many at once.
- ``feedback``, ``gradebook``: what a batch writes; ``python -m cloudlab gradebook`` (the class gradebook).
- ``collect``: a folder of submissions, student ids, missing and duplicate work, late penalties.
- ``sources``: the tests to grade with (a master, a tests file, ``--tests-dir``).
- ``release``: ``python -m cloudlab release`` (students, ``--gradescope``, ``--classroom``);
  ``gradescope``: the autograder's ``run_autograder`` step and its ``results.json``.
"""

from .check import checker

__all__ = ["checker"]
