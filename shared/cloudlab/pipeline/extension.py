"""Extending the pattern: a third analyzer branch, added by changing the template and one function
(notebook 06, section "Extending the pattern").

The capstone's coordination already reads its list of branches from the template
(``ANALYZER_BRANCHES`` in ``moderation.coordination``; the dispatcher starts ``<BRANCH>_FUNCTION``
for each). Adding a branch is then:

1. the template: a new function resource, its name in the dispatcher's environment (and the
   permission to invoke it), and the branch in ``ANALYZER_BRANCHES`` (:func:`extended_template`);
2. one new function: ``examples/format_analyzer/app.py``.

:func:`build` writes that application into a folder (the capstone's functions and layer copied,
the new function added, the changed template as ``template.json``), which
``cloudlab.pipeline.deploy.deploy(template=...)`` deploys like the original.
"""

from __future__ import annotations

import copy
import difflib
import json
import shutil
from pathlib import Path

from .deploy import PIPELINE_DIR, load_template

BRANCH = "format"
FUNCTION = "FormatAnalyzerFunction"
EXAMPLE = PIPELINE_DIR / "examples" / "format_analyzer"


def extended_template(template: dict | None = None) -> dict:
    """The capstone's template with the third branch added (the original is not changed)."""
    extended = copy.deepcopy(template or load_template())
    resources = extended["Resources"]
    analyzer = resources["ModerationAnalyzerFunction"]["Properties"]
    resources[FUNCTION] = {"Type": "AWS::Serverless::Function", "Properties": {
        "CodeUri": f"functions/{BRANCH}_analyzer/",
        "Policies": [{"S3ReadPolicy": {"BucketName": {"Ref": "UploadBucket"}}},
                     {"DynamoDBCrudPolicy": {"TableName": {"Ref": "JobsTable"}}},
                     {"SNSPublishMessagePolicy": {"TopicName": {"Fn::GetAtt": ["ResultsTopic", "TopicName"]}}}],
        "EventInvokeConfig": copy.deepcopy(analyzer["EventInvokeConfig"])}}
    variables = extended["Globals"]["Function"]["Environment"]["Variables"]
    variables["ANALYZER_BRANCHES"] = f"moderation,custom,{BRANCH}"
    dispatcher = resources["DispatcherFunction"]["Properties"]
    dispatcher["Environment"]["Variables"][f"{BRANCH.upper()}_FUNCTION"] = {"Ref": FUNCTION}
    dispatcher["Policies"].append({"LambdaInvokePolicy": {"FunctionName": {"Ref": FUNCTION}}})
    extended["Outputs"][f"{FUNCTION}Name"] = {"Value": {"Ref": FUNCTION}}
    return extended


def template_diff(before: dict | None = None, after: dict | None = None) -> str:
    """The change to the template as a unified diff of the two, written as YAML."""
    import yaml

    before = before or load_template()
    after = after or extended_template(before)
    lines = [yaml.safe_dump(t, sort_keys=False, width=120).splitlines(keepends=True) for t in (before, after)]
    return "".join(difflib.unified_diff(*lines, fromfile="template.yaml", tofile="template.yaml (three branches)", n=1))


def build(folder: str | Path) -> Path:
    """Write the extended application into ``folder``; the path of its template, for ``deploy(template=...)``."""
    folder = Path(folder)
    for part in ("functions", "layers"):
        shutil.copytree(PIPELINE_DIR / part, folder / part, dirs_exist_ok=True,
                        ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    shutil.copytree(EXAMPLE, folder / "functions" / f"{BRANCH}_analyzer", dirs_exist_ok=True,
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    path = folder / "template.json"  # JSON is YAML: load_template and SAM read it alike
    path.write_text(json.dumps(extended_template(), indent=1))
    return path
