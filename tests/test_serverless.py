"""cloudlab.serverless: REPORT parsing, the Lambda pricing calculator and the CPU model (notebook 03)."""

from __future__ import annotations

import base64

import boto3
import pytest

import cloudlab
from cloudlab import serverless
from cloudlab.lambda_service import zip_code

COLD = ("START RequestId: abc Version: $LATEST\nhello\nEND RequestId: abc\n"
        "REPORT RequestId: abc\tDuration: 0.38 ms\tBilled Duration: 43 ms\tMemory Size: 128 MB\t"
        "Max Memory Used: 15 MB\tInit Duration: 41.76 ms\t\n")
WARM = "REPORT RequestId: abd\tDuration: 12.50 ms\tBilled Duration: 13 ms\tMemory Size: 512 MB\tMax Memory Used: 73 MB\t\n"


def test_report_reads_cold_and_warm_lines_from_text_and_from_an_invoke_answer():
    assert serverless.report(COLD) == {"cold": True, "init_ms": 41.76, "duration_ms": 0.38, "billed_ms": 43,
                                       "memory_mb": 128, "max_memory_mb": 15}
    answer = {"LogResult": base64.b64encode(WARM.encode()).decode()}
    assert serverless.report(answer) == {"cold": False, "init_ms": None, "duration_ms": 12.5, "billed_ms": 13,
                                         "memory_mb": 512, "max_memory_mb": 73}
    with pytest.raises(ValueError):
        serverless.report({})


def test_report_of_a_real_invoke_on_the_local_service():
    cloudlab.use_backend()
    lam = boto3.client("lambda")
    role = serverless.lambda_role(boto3.client("iam"), "test-serverless-role")
    assert serverless.lambda_role(boto3.client("iam"), "test-serverless-role") == role
    name = "test-serverless-report"
    try:
        lam.delete_function(FunctionName=name)
    except lam.exceptions.ResourceNotFoundException:
        pass
    lam.create_function(FunctionName=name, Runtime="python3.12", Role=role, Handler="app.handler", MemorySize=256,
                        Code={"ZipFile": zip_code("def handler(event, context):\n    return 1\n")})
    first = serverless.report(lam.invoke(FunctionName=name, Payload=b"{}", LogType="Tail"))
    second = serverless.report(lam.invoke(FunctionName=name, Payload=b"{}", LogType="Tail"))
    assert first["cold"] and first["init_ms"] > 0 and first["memory_mb"] == 256
    assert first["billed_ms"] >= first["init_ms"]            # INIT is billed (since Aug 2025)
    assert not second["cold"] and second["init_ms"] is None
    lam.delete_function(FunctionName=name)


def test_monthly_cost_matches_the_lectures_example_and_the_free_tier():
    # 1M invocations, 512 MB, 200 ms: $0.20 requests + 100,000 GB-s x $0.0000166667 = $1.87
    bill = serverless.monthly_cost(1_000_000, 200, 512, free_tier=False)
    assert bill["gb_seconds"] == pytest.approx(100_000)
    assert bill["request_usd"] == pytest.approx(0.20)
    assert bill["duration_usd"] == pytest.approx(1.66667, rel=1e-4)
    assert round(bill["total_usd"], 2) == 1.87
    assert serverless.monthly_cost(1_000_000, 200, 512)["total_usd"] == 0      # inside the free tier
    arm = serverless.monthly_cost(1_000_000, 200, 512, architecture="arm64", free_tier=False)
    assert arm["duration_usd"] == pytest.approx(100_000 * 0.0000133334)
    big = serverless.monthly_cost(10_000_000, 200, 1024)   # 2M GB-s, 10M requests
    assert big["request_usd"] == pytest.approx(9 * 0.20)
    assert big["duration_usd"] == pytest.approx((2_000_000 - 400_000) * 0.0000166667)
    with pytest.raises(ValueError):
        serverless.monthly_cost(1, 1, 128, architecture="sparc")


def test_init_is_billed_on_cold_starts_unless_the_old_rule_is_asked_for():
    # 1M invocations, 1 % cold, 1,000 ms INIT at 512 MB: 10,000 x 1 s x 0.5 GB = 5,000 GB-s more
    with_init = serverless.monthly_cost(1_000_000, 100, 512, cold_start_fraction=0.01, init_ms=1000, free_tier=False)
    before = serverless.monthly_cost(1_000_000, 100, 512, cold_start_fraction=0.01, init_ms=1000, init_billed=False,
                                     free_tier=False)
    assert with_init["of_which_init_gb_seconds"] == pytest.approx(5_000)
    assert with_init["gb_seconds"] - before["gb_seconds"] == pytest.approx(5_000)
    assert before["of_which_init_gb_seconds"] == 0
    # whole milliseconds: 0.3 ms bills as 1 ms
    assert serverless.monthly_cost(1000, 0.3, 1024, free_tier=False)["gb_seconds"] == pytest.approx(1.0)


def test_the_cpu_model_scales_with_memory_up_to_what_the_code_can_use():
    assert serverless.vcpus(1769) == 1 and serverless.vcpus(3538) == 2 and 5.7 < serverless.vcpus(10240) <= 6
    assert serverless.modelled_duration_ms(100, 1769) == pytest.approx(100)
    assert serverless.modelled_duration_ms(100, 1769 / 4, wait_ms=10) == pytest.approx(410)
    assert serverless.modelled_duration_ms(100, 3538) == pytest.approx(100)              # one thread: no gain
    assert serverless.modelled_duration_ms(100, 3538, threads=2) == pytest.approx(50)
