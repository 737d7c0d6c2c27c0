"""Lab 06's bridge between a student's notebook and the pipeline: the decision specification to
show, and the student's functions turned into the layer module the pipeline deploys.

Introduced in lab 06 (``solutions/06_moderation_pipeline_lab.ipynb``). The specification has ONE
home, the docstring of the layer's ``moderation/decisions.py``; :func:`specification` only cuts
it out for display. :func:`coordination_source` lets the grader run a student's ``claim_job``
and ``check_and_finalize`` inside the real pipeline::

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
import textwrap
import types
from contextlib import contextmanager

from .layer import LAYER_PYTHON, layer_module

__all__ = ["COORDINATION", "specification", "coordination_source", "with_pipeline_decide",
           "reference_decisions_blocked"]

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
