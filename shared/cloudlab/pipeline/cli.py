"""``python -m cloudlab pipeline ...``: the capstone's commands (notebook 06).

``deploy`` and ``teardown`` live here; ``run`` and ``replay-dlq`` are registered by
``run.add_parsers``. Another subcommand adds itself the same way: a function
``_name(args) -> int`` and a parser in :func:`add_parser` (or its module's ``add_parsers``).
"""

from __future__ import annotations

import json
import sys


def _parameters(pairs: list[str]) -> dict[str, str]:
    values = {}
    for pair in pairs or []:
        name, sep, value = pair.partition("=")
        if not sep or not name:
            raise SystemExit(f"--param takes NAME=VALUE, not {pair!r}")
        values[name] = value
    return values


def _deploy(args) -> int:
    from .deploy import DeployError, deploy

    try:
        stack = deploy(args.stack, parameters=_parameters(args.param), model=False if args.no_model else None,
                       template=args.template, local_timings=not args.aws_timings)
    except DeployError as error:
        print(f"deploy failed: {error}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps({"stack": stack.name, "backend": stack.backend, "deploy_seconds": stack.deploy_seconds,
                          "outputs": stack.outputs, "created_by_deployer": stack.created_by_deployer}, indent=2))
    else:
        print(f"stack {stack.name} deployed on {stack.backend} in {stack.deploy_seconds:.1f} s")
        for name, value in sorted(stack.outputs.items()):
            print(f"  {name:32} {value}")
        print("created or set by the deployer (moto's CloudFormation lacks them):")
        for note in stack.created_by_deployer:
            print(f"  - {note}")
    from ..backend import current

    chosen = current()
    if chosen is not None and chosen.started_here and not args.serve:
        print("note: the emulator runs inside this command, so the stack ends with it; keep one running "
              "with `python -m cloudlab backend serve` (or pass --serve)", file=sys.stderr)
    if args.serve and stack.api_front is not None:
        import threading

        print(f"serving the API at {stack.api_url} until Ctrl-C", flush=True)
        try:
            threading.Event().wait()
        except KeyboardInterrupt:
            stack.api_front.stop()
    return 0


def _teardown(args) -> int:
    from .deploy import teardown

    found = teardown(args.stack)
    print(f"stack {args.stack} {'deleted' if found else 'was not deployed'}")
    return 0


def add_parser(subparsers) -> None:
    """Register ``pipeline`` and its subcommands on ``python -m cloudlab``'s subparsers."""
    pipeline = subparsers.add_parser("pipeline", help="the capstone's content-moderation pipeline (notebook 06)")
    actions = pipeline.add_subparsers(dest="pipeline_action", required=True)

    deploy = actions.add_parser("deploy", help="package, translate and deploy template.yaml on the current backend")
    deploy.add_argument("--stack", default="moderation", help="stack name (default moderation)")
    deploy.add_argument("--param", action="append", metavar="NAME=VALUE", help="a template parameter (repeatable)")
    deploy.add_argument("--template", default=None, help="another SAM template (default: the capstone's)")
    deploy.add_argument("--no-model", action="store_true", help="do not train and upload the custom model")
    deploy.add_argument("--aws-timings", action="store_true", help="keep the template's defaults (no local shortening)")
    deploy.add_argument("--json", action="store_true", help="print the stack as JSON")
    deploy.add_argument("--serve", action="store_true", help="keep the API front running until Ctrl-C")
    deploy.set_defaults(run=_deploy)

    teardown = actions.add_parser("teardown", help="delete the stack and what the deployer created beside it")
    teardown.add_argument("--stack", default="moderation", help="stack name (default moderation)")
    teardown.set_defaults(run=_teardown)

    from . import run  # pipeline run, pipeline replay-dlq (the runner's own parsers)

    run.add_parsers(actions)
