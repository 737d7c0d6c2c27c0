"""Running a lab master's test cases against another implementation (the fairness tests)."""

from __future__ import annotations

import boto3


def failures(master, question: str, namespace: dict, hidden: bool = False) -> list[str]:
    """Descriptions of the question's cases (public ones, or all with ``hidden``) that fail for ``namespace``."""
    failed = []
    for case in master.question(question).cases:
        if case.hidden and not hidden:
            continue
        try:
            exec(compile(case.code, case.description, "exec"), {"boto3": boto3, **namespace})
        except Exception as error:  # noqa: BLE001 - any failure of the case counts
            print(f"{case.description}: {type(error).__name__}: {error}")
            failed.append(case.description)
    return failed
