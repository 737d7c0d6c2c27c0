"""Lambda helpers: REPORT lines, a role for functions, and a pricing calculator.

Introduced in notebook 03 (cold starts, memory/CPU and cost); used by lab 03.

- :func:`report` reads the ``REPORT`` line that ``invoke(..., LogType="Tail")`` returns
  (base64 in ``LogResult``) into numbers: cold or warm, Init Duration, Duration, Billed
  Duration, memory. It works the same against AWS, the in-kernel emulator and a served one.
- :func:`lambda_role` returns (creating once) an IAM role Lambda can assume.
- :func:`monthly_cost` is a calculator at the list prices in ``cloudlab/data/aws_prices.csv`` (the one
  home for prices): requests, GB-seconds for x86_64 or arm64, INIT billed on cold starts
  (since 1 Aug 2025), the monthly free tier.
- :func:`vcpus` and :func:`modelled_duration_ms` are a MODEL of how AWS scales CPU with
  memory (1,769 MB = 1 vCPU); this machine cannot give a process a fraction of a CPU, so
  anything computed with them must be labelled as a model where it is shown.
"""

from __future__ import annotations

import base64
import json
import math
import re

from .ledger import prices

MB_PER_VCPU = 1769          # Lambda Developer Guide "configuration-memory" (facts file)
MAX_VCPUS = 6               # at 10,240 MB
# The monthly free tier (facts file, Lambda pricing row). Quantities, not prices, so they live
# here; both architectures draw on the same allowance.
FREE_REQUESTS = 1_000_000
FREE_GB_SECONDS = 400_000
ARCHITECTURES = {"x86_64": "gb_second_x86", "arm64": "gb_second_arm64"}

_REPORT_FIELDS = {
    "duration_ms": re.compile(r"\tDuration: ([\d.]+) ms"),
    "billed_ms": re.compile(r"Billed Duration: (\d+) ms"),
    "memory_mb": re.compile(r"Memory Size: (\d+) MB"),
    "max_memory_mb": re.compile(r"Max Memory Used: (\d+) MB"),
    "init_ms": re.compile(r"Init Duration: ([\d.]+) ms"),
}


def tail_log(answer: dict) -> str:
    """The log tail of an ``invoke(..., LogType="Tail")`` answer (``LogResult``, base64), as text."""
    encoded = answer.get("LogResult")
    return base64.b64decode(encoded).decode("utf-8", "replace") if encoded else ""


def report(answer_or_log) -> dict:
    """The figures of the REPORT line in an invoke answer (``LogType="Tail"``) or a log text.

    Returns ``{"cold", "init_ms", "duration_ms", "billed_ms", "memory_mb", "max_memory_mb"}``;
    ``cold`` is True when the line has an ``Init Duration`` (the invoke started a new
    execution environment), and ``init_ms`` is then that duration, else None. Raises
    ``ValueError`` when there is no REPORT line (the invoke was made without ``LogType="Tail"``).
    """
    log = tail_log(answer_or_log) if isinstance(answer_or_log, dict) else str(answer_or_log)
    lines = [line for line in log.splitlines() if line.startswith("REPORT ")]
    if not lines:
        raise ValueError("no REPORT line: invoke with LogType='Tail'")
    line = lines[-1]
    figures: dict = {}
    for key, pattern in _REPORT_FIELDS.items():
        match = pattern.search(line)
        figures[key] = (float(match.group(1)) if "." in match.group(1) else int(match.group(1))) if match else None
    figures["cold"] = figures["init_ms"] is not None
    return {"cold": figures.pop("cold"), **figures}


def lambda_role(iam, name: str) -> str:
    """The ARN of IAM role ``name`` that Lambda may assume, created on first use."""
    try:
        return iam.get_role(RoleName=name)["Role"]["Arn"]
    except iam.exceptions.NoSuchEntityException:
        trust = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole",
                                                         "Principal": {"Service": "lambda.amazonaws.com"}}]}
        return iam.create_role(RoleName=name, AssumeRolePolicyDocument=json.dumps(trust))["Role"]["Arn"]


def vcpus(memory_mb: float) -> float:
    """MODEL: the vCPU share AWS gives a function of ``memory_mb`` (1,769 MB = 1 vCPU, at most 6)."""
    return min(MAX_VCPUS, memory_mb / MB_PER_VCPU)


def modelled_duration_ms(cpu_ms_at_one_vcpu: float, memory_mb: float, wait_ms: float = 0.0, threads: int = 1) -> float:
    """MODEL: handler duration at ``memory_mb`` for work measured as CPU time on one full vCPU.

    CPU work stretches by ``1 / vcpus(memory_mb)`` while the share is below what the code can
    use (``threads`` busy threads; a plain Python handler uses one); waiting (I/O, sleeps)
    does not stretch. Not a measurement: label every figure computed with it as a model.
    """
    usable = min(vcpus(memory_mb), float(threads))
    return cpu_ms_at_one_vcpu / usable + wait_ms


def monthly_cost(invocations: float, duration_ms: float, memory_mb: float, *, architecture: str = "x86_64",
                 cold_start_fraction: float = 0.0, init_ms: float = 0.0, init_billed: bool = True,
                 free_tier: bool = True) -> dict:
    """Estimated monthly Lambda bill (on-demand, us-east-1 list prices from ``cloudlab/data/aws_prices.csv``).

    ``duration_ms`` is the handler's average duration; a share ``cold_start_fraction`` of the
    invocations also runs INIT for ``init_ms``. Each invoke is billed in whole milliseconds;
    on a cold start the billed duration covers INIT + handler when ``init_billed`` (AWS
    bills INIT for on-demand ZIP functions on managed runtimes since 1 Aug 2025; set False for
    the rule before). ``free_tier`` subtracts 1M requests and 400,000 GB-s a month.
    Not modelled: the cheaper duration tiers above 6 billion GB-s a month, ephemeral storage
    above 512 MB, provisioned concurrency, data transfer.

    Returns a dict of the quantities and dollars (``total_usd`` is the bill).
    """
    if architecture not in ARCHITECTURES:
        raise ValueError(f"architecture must be one of {sorted(ARCHITECTURES)}, not {architecture!r}")
    if not 0 <= cold_start_fraction <= 1:
        raise ValueError("cold_start_fraction is a share between 0 and 1")
    table = prices()
    gb = memory_mb / 1024
    cold = invocations * cold_start_fraction
    warm = invocations - cold
    warm_billed_ms = math.ceil(duration_ms)
    cold_billed_ms = math.ceil(duration_ms + init_ms) if init_billed else warm_billed_ms
    handler_gb_s = invocations * warm_billed_ms / 1000 * gb
    init_gb_s = cold * (cold_billed_ms - warm_billed_ms) / 1000 * gb
    gb_seconds = warm * warm_billed_ms / 1000 * gb + cold * cold_billed_ms / 1000 * gb
    free_requests = min(invocations, FREE_REQUESTS) if free_tier else 0
    free_gb_s = min(gb_seconds, FREE_GB_SECONDS) if free_tier else 0
    request_usd = (invocations - free_requests) * table[("lambda", "request")]
    duration_usd = (gb_seconds - free_gb_s) * table[("lambda", ARCHITECTURES[architecture])]
    return {"architecture": architecture, "invocations": invocations, "memory_mb": memory_mb,
            "gb_seconds": gb_seconds, "of_which_init_gb_seconds": init_gb_s,
            "free_requests": free_requests, "free_gb_seconds": free_gb_s,
            "request_usd": request_usd, "duration_usd": duration_usd, "total_usd": request_usd + duration_usd,
            "handler_gb_seconds": handler_gb_s}


__all__ = ["report", "tail_log", "lambda_role", "vcpus", "modelled_duration_ms", "monthly_cost",
           "MB_PER_VCPU", "FREE_REQUESTS", "FREE_GB_SECONDS"]
