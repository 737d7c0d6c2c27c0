"""Lab 06's bridge between a student's notebook and the pipeline: the decision specification to
show, and the student's functions turned into the layer module the pipeline deploys.

Introduced in lab 06 (``solutions/06_moderation_pipeline_lab.ipynb``). The specification has ONE
home, the docstring of the layer's ``moderation/decisions.py``; :func:`specification` only cuts
it out for display. :func:`coordination_source` lets the grader run a student's ``claim_job``
and ``check_and_finalize`` inside the real pipeline (:func:`run_in_pipeline` does it all: deploy,
uploads with duplicated deliveries, checks, teardown)::

    source = coordination_source(claim_job, check_and_finalize)
    deploy(overrides={COORDINATION: source})

The module it builds is the layer's own ``coordination.py`` (so ``notify_once``, ``fail_job`` and
the helpers the functions import stay as they are), then the student's functions, which replace
the ones of the same name. They run in a namespace of their own with what they use: helper
functions the student wrote (their source too), imports, and plain constants. ``decide`` is the pipeline's own,
so the in-pipeline test grades coordination only (the decision rules have their own tests).
"""

from __future__ import annotations

import ast
import dis
import inspect
import json
import logging
import textwrap
import time
import types
import warnings
from collections import Counter
from contextlib import contextmanager

from .layer import LAYER_PYTHON, layer_module

__all__ = ["COORDINATION", "specification", "coordination_source", "with_pipeline_decide",
           "reference_decisions_blocked", "run_in_pipeline"]

# The path of the coordination module inside the pipeline folder, as deploy(overrides=...) names files.
COORDINATION = "layers/common/python/moderation/coordination.py"

# Names the student's code may use that resolve to the pipeline's own objects, not to the notebook's.
PIPELINE_NAMES = {"decide": "from moderation.decisions import decide",
                  "Thresholds": "from moderation.decisions import Thresholds"}

def specification() -> str:
    """The decision rules' specification (its definitions, rule table and edge cases), as written in
    the docstring of the layer's ``moderation/decisions.py``."""
    text = (LAYER_PYTHON / "moderation" / "decisions.py").read_text()
    doc = ast.get_docstring(ast.parse(text)) or ""
    start = doc.find("SPECIFICATION")
    if start < 0:
        raise LookupError("moderation/decisions.py's docstring has no SPECIFICATION section")
    return doc[start:].strip()


def with_pipeline_decide(function: types.FunctionType) -> types.FunctionType:
    """A copy of ``function`` whose ``decide`` and ``Thresholds`` are the pipeline's own, as they are when
    :func:`coordination_source` deploys it; lab 06 grades check-and-finalize apart from the decision rules.
    The copy sees the notebook's other globals as they are now."""
    if not isinstance(function, types.FunctionType):
        raise ValueError(f"expected a function defined with def, got {function!r}")
    decisions = layer_module("decisions")
    namespace = {**function.__globals__, "decide": decisions.decide, "Thresholds": decisions.Thresholds}
    copy = types.FunctionType(function.__code__, namespace, function.__name__, function.__defaults__,
                              function.__closure__)
    copy.__kwdefaults__ = function.__kwdefaults__
    return copy


@contextmanager
def reference_decisions_blocked():
    """While active, the functions of the layer's ``moderation.decisions`` (all but ``Thresholds``) raise,
    so lab 06's tests of a student's ``decide`` cannot be passed by calling the pipeline's own."""
    decisions = layer_module("decisions")
    blocked = [name for name in ("decide", "failed", "moderation_verdict", "custom_verdict", "top_level_confidences")
               if hasattr(decisions, name)]
    saved = {name: getattr(decisions, name) for name in blocked}

    def refuse(name):
        def refused(*args, **kwargs):
            raise AssertionError(f"your decide called moderation.decisions.{name}: Question 1 asks for the rules "
                                 "written by you")
        return refused

    try:
        for name in blocked:
            setattr(decisions, name, refuse(name))
        yield
    finally:
        for name, function in saved.items():
            setattr(decisions, name, function)


def _source(function) -> str:
    try:
        return textwrap.dedent(inspect.getsource(function))
    except (OSError, TypeError) as error:
        raise ValueError(f"cannot read the source of {function.__name__}: run the cell that defines it "
                         f"(and define it with def, not lambda)") from error


def _global_names(code: types.CodeType) -> set[str]:
    """The global names a code object (and the functions, classes and comprehensions inside it) loads."""
    names = {instruction.argval for instruction in dis.get_instructions(code)
             if instruction.opname in ("LOAD_GLOBAL", "LOAD_NAME")}
    for constant in code.co_consts:
        if isinstance(constant, types.CodeType):
            names |= _global_names(constant)
    return names


def _literal(value) -> bool:
    try:
        return ast.literal_eval(repr(value)) == value
    except (ValueError, SyntaxError, TypeError, RecursionError):
        return False


def coordination_source(*functions, original: str | None = None) -> str:
    """``coordination.py`` with ``functions`` (a student's ``claim_job``, ``check_and_finalize``)
    appended, plus the helpers, imports and constants they use; see the module docstring.

    Raises ``ValueError`` with a clear message for code that cannot run in a Lambda function:
    functions without readable source, use of ``cloudlab`` (not in the layer), or a global that is
    neither a module, a function, a class nor a plain constant.
    """
    if not functions:
        raise ValueError("give at least one function (claim_job, check_and_finalize)")
    for function in functions:
        if not isinstance(function, types.FunctionType):
            raise ValueError(f"expected functions defined with def, got {function!r}")
    original = original if original is not None else (LAYER_PYTHON / "moderation" / "coordination.py").read_text()
    imports: dict[str, str] = {}
    constants: dict[str, str] = {}
    sources: dict[str, str] = {}
    pending = list(functions)
    while pending:
        function = pending.pop()
        if function.__name__ in sources:
            continue
        if function.__closure__:
            raise ValueError(f"{function.__name__} uses variables of an enclosing function "
                             f"({', '.join(function.__code__.co_freevars)}): define it at the top level of a cell")
        sources[function.__name__] = _source(function)
        namespace = function.__globals__
        for name in sorted(_global_names(function.__code__)):
            if name in sources or name not in namespace:  # builtins are not in a module's namespace
                continue
            value = namespace[name]
            if name in PIPELINE_NAMES:
                imports[name] = PIPELINE_NAMES[name]
            elif isinstance(value, types.ModuleType):
                module = value.__name__
                if module.split(".")[0] == "cloudlab":
                    raise ValueError(f"{function.__name__} uses {name} ({module}): the pipeline's functions cannot "
                                     "import cloudlab; use boto3 and the standard library")
                imports[name] = f"import {module}" if module == name else f"import {module} as {name}"
            elif isinstance(value, (types.FunctionType, type)) and value.__module__ in ("__main__", function.__module__) \
                    and not value.__module__.startswith(("cloudlab", "moderation")):
                if isinstance(value, types.FunctionType):
                    pending.append(value)
                else:
                    sources[name] = _source(value)
            elif hasattr(value, "__module__") and hasattr(value, "__qualname__") and callable(value):
                module = value.__module__
                if module.split(".")[0] == "cloudlab":
                    raise ValueError(f"{function.__name__} uses {name} from {module}: the pipeline's functions cannot "
                                     "import cloudlab; use boto3 and the standard library")
                imports[name] = f"from {module} import {value.__qualname__}" + \
                    ("" if value.__qualname__ == name else f" as {name}")
            elif _literal(value):
                constants[name] = f"{name} = {value!r}"
            else:
                raise ValueError(f"{function.__name__} uses the global {name} = {type(value).__name__} object, which "
                                 "cannot be carried into the pipeline; create it inside the function")
    student = sorted(set(imports.values())) + [""] + [constants[name] for name in sorted(constants)]
    for source in reversed(list(sources.values())):
        student += ["", "", source.rstrip()]
    student_text = "\n".join(student) + "\n"
    exported = [function.__name__ for function in functions]
    # The student's code runs in a namespace of its own, so its helpers cannot shadow the names the
    # original module's other functions (notify_once, fail_job) rely on.
    return "\n".join([
        original.rstrip(), "", "",
        "# ---- lab 06: the student's functions replace the ones above of the same name ----",
        f"_STUDENT_SOURCE = {student_text!r}",
        "_student_namespace = {'__name__': 'moderation.lab06_student'}",
        "exec(compile(_STUDENT_SOURCE, 'lab06_student.py', 'exec'), _student_namespace)",
        *[f"{name} = _student_namespace[{name!r}]" for name in exported],
    ]) + "\n"


# Images of the data set that reach different decisions, for the in-pipeline check.
PIPELINE_IMAGES = 3


def run_in_pipeline(claim_job, check_and_finalize, uploads: int = PIPELINE_IMAGES, *, stack_name: str = "lab06-pipeline",
                    timeout: float = 40.0) -> dict:
    """Deploy the pipeline with the student's ``claim_job`` and ``check_and_finalize`` in its layer (see
    :func:`coordination_source`), upload ``uploads`` images through the HTTP API, deliver every job's SQS
    message a second time and invoke each analyzer a second time, then check that every job ended
    ``decided`` with the pipeline's decision for its results, was finalized once (the analyzers' "job
    finalized" log lines) and notified once. Returns ``{"ok", "problem", "jobs", "finalizations",
    "notifications", "statuses", "seconds"}``; the stack is torn down afterwards.

    Lab 06's hidden test (question 4). ``timeout`` bounds the wait for the jobs after the uploads.
    """
    import boto3

    from . import deploy as deployer
    from . import run

    started = time.monotonic()
    problem = preflight(claim_job, check_and_finalize)
    if problem:  # no deploy for code that fails on its own: the feedback comes at once
        return {"ok": False, "problem": problem, "jobs": 0, "finalizations": {}, "notifications": {}, "statuses": {},
                "seconds": round(time.monotonic() - started, 1), "deploy_seconds": 0.0}
    source = coordination_source(claim_job, check_and_finalize)
    with _moto_cloudformation_quiet():
        stack = deployer.deploy(stack_name, overrides={COORDINATION: source})
    report = {"ok": False, "problem": "", "jobs": 0, "finalizations": {}, "notifications": {}, "statuses": {},
              "seconds": 0.0, "deploy_seconds": round(time.monotonic() - started, 1)}
    try:
        sqs, lambda_client, logs = boto3.client("sqs"), boto3.client("lambda"), boto3.client("logs")
        table = boto3.resource("dynamodb").Table(stack.output("JobsTableName"))
        analyzers = [stack.function_name("ModerationAnalyzerFunction"), stack.function_name("CustomAnalyzerFunction")]
        collector = run.NotificationCollector(sqs, stack.output("NotificationsQueueUrl")).start()
        since_ms = int(time.time() * 1000) - 1000
        uploader = run.Uploader(stack.api_url)
        images = _varied_images(run.load_images(), uploads)
        job_ids = []
        try:
            for image in images:
                job = uploader.upload(run.Job(image, time.time()))
                if not job.job_id:
                    report["problem"] = f"the upload of {image.filename} was refused with HTTP {job.status_code}"
                    return report
                job_ids.append(job.job_id)
                item = table.get_item(Key={"job_id": job.job_id}, ConsistentRead=True)["Item"]
                message = {"job_id": job.job_id, "bucket": item["bucket"], "key": item["key"]}
                # duplicates, as SQS and Lambda's async invokes may deliver them
                sqs.send_message(QueueUrl=stack.output("JobsQueueUrl"), MessageBody=json.dumps(message))
                for branch, name in zip(("moderation", "custom"), analyzers):
                    lambda_client.invoke(FunctionName=name, InvocationType="Event",
                                         Payload=json.dumps({**message, "branch": branch}).encode())
            report["jobs"] = len(job_ids)
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                items = run.read_jobs(table.name, job_ids)
                terminal = all(items.get(j, {}).get("status") in run.TERMINAL for j in job_ids)
                if terminal and all(collector.arrivals.get(j) for j in job_ids) \
                        and run.queue_depth(sqs, stack.output("JobsQueueUrl")) == 0:
                    collector.reset_quiet()
                    while not collector.quiet(2) and time.monotonic() < deadline:
                        time.sleep(0.1)  # until two long polls in a row bring no further notification
                    break
                time.sleep(0.25)  # re-read the jobs, to the deadline
        finally:
            collector.stop()
        items = run.read_jobs(table.name, job_ids)
        report["statuses"] = {j: items.get(j, {}).get("status") for j in job_ids}
        report["notifications"] = {j: len(collector.arrivals.get(j, [])) for j in job_ids}
        lines = _finalized_lines(logs, analyzers, since_ms, job_ids)
        report["finalizations"] = {j: lines.get(j, 0) for j in job_ids}
        report["problem"] = _pipeline_problem(job_ids, items, report, logs, stack.function_names.values(), since_ms)
        report["ok"] = not report["problem"]
        return report
    finally:
        report["run_seconds"] = round(time.monotonic() - started - report["deploy_seconds"], 1)
        with _moto_cloudformation_quiet():
            stack.teardown()
        report["seconds"] = round(time.monotonic() - started, 1)


def preflight(claim_job, check_and_finalize) -> str:
    """What must work before the pipeline is worth deploying, checked in seconds ("" when it does):
    the functions can become the layer's ``coordination.py`` (:func:`coordination_source`: no
    ``cloudlab``, no closures, no global objects), and one job goes through them on a scratch table,
    one step after the other, from ``pending`` to finalized.

    Lab 06's public test of question 4, so a student sees this fail before submitting;
    :func:`run_in_pipeline` (the hidden test) runs it first.
    """
    import boto3

    from . import races

    try:
        coordination_source(claim_job, check_and_finalize)
    except ValueError as error:
        return f"your functions cannot go into the pipeline's layer: {error}"

    table = boto3.resource("dynamodb").Table(races.create_jobs_table())
    finalize = with_pipeline_decide(check_and_finalize)
    step = "claim_job on a pending job"
    try:
        job_id = races.new_job(table, status="pending")
        if claim_job(table, job_id) is not True:
            return "before deploying: claim_job did not return True for a pending job"
        moderation_result, custom_result = races.SAMPLE_RESULTS[0]
        step = "check_and_finalize for the first branch"
        finalize(table, job_id, "moderation", moderation_result)
        step = "check_and_finalize for the second branch"
        if finalize(table, job_id, "custom", custom_result) is None:
            return "before deploying: check_and_finalize did not finalize when the second branch's result came in"
    except Exception as error:  # noqa: BLE001 - the student's code, whatever it raises
        return f"before deploying: {step} raised {type(error).__name__}: {error}"
    finally:
        table.delete()
    return ""


@contextmanager
def _moto_cloudformation_quiet():
    """Without moto's notes on the resource types its CloudFormation skips (the deployer creates those)."""
    logger = logging.getLogger("moto")  # moto.cloudformation.parsing logs under "moto"
    level = logger.level
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        logger.setLevel(logging.ERROR)
        try:
            yield
        finally:
            logger.setLevel(level)


def _varied_images(images: list, count: int) -> list:
    """``count`` images of different ground truths first (the decisions then differ), in a fixed order."""
    chosen, truths = [], set()
    for image in images:
        if image.truth not in truths:
            chosen.append(image)
            truths.add(image.truth)
    chosen += [image for image in images if image not in chosen]
    return chosen[:count]


def _finalized_lines(logs, analyzers: list[str], since_ms: int, job_ids: list[str], settle: float = 10.0) -> Counter:
    """The analyzers' "job finalized" log lines per job, read until every job has one and a further
    read adds nothing (Lambda ships logs asynchronously), or ``settle`` seconds."""
    from . import run

    deadline, previous = time.monotonic() + settle, None
    while True:
        counts = Counter()
        for line in run.function_log_lines(logs, analyzers, since_ms):
            try:
                fields = json.loads(line)
            except ValueError:
                continue
            if fields.get("stage") == "finalized" and fields.get("job_id") in job_ids:
                counts[fields["job_id"]] += 1
        if (counts == previous and all(counts[j] for j in job_ids)) or time.monotonic() > deadline:
            return counts
        previous = counts
        time.sleep(0.5)  # logs arrive in batches; read again to the deadline


def _pipeline_problem(job_ids, items, report, logs, functions, since_ms) -> str:
    """What went wrong, for the student's feedback ("" when every job was decided, finalized and notified once)."""
    from . import run

    decide = layer_module("decisions").decide
    coordination = layer_module("coordination")
    problems = []
    for job_id in job_ids:
        item = items.get(job_id) or {}
        status, finalized, notified = item.get("status"), report["finalizations"][job_id], report["notifications"][job_id]
        if status != "decided":
            problems.append(f"job {job_id} ended with status {status!r}, not 'decided'")
        elif "moderation_result" in item and "custom_result" in item:
            expected = decide(coordination.from_dynamo(item["moderation_result"]),
                              coordination.from_dynamo(item["custom_result"]))
            if item.get("decision") != expected:
                problems.append(f"job {job_id} was decided {item.get('decision')!r}; its results give {expected!r}")
        if finalized != 1:
            problems.append(f"job {job_id} was finalized {finalized} times (check_and_finalize returned a decision "
                            f"{finalized} times)")
        if notified != 1:
            problems.append(f"job {job_id} was notified {notified} times")
    if not problems:
        return ""
    errors = [line for line in run.function_log_lines(logs, list(functions), since_ms)
              if '"level": "ERROR"' in line or '"level":"ERROR"' in line]
    hint = f" First error logged by the functions: {errors[0][:400]}" if errors else ""
    return "In the deployed pipeline: " + "; ".join(problems[:4]) + "." + hint
