"""``python -m cloudlab conformance``: run the suite on the current backend and print the table."""

from __future__ import annotations

import json
import sys

from . import table
from .suite import run, select


def backend_version(backend) -> str | None:
    """What answers: moto's version for the embedded backend, LocalStack's from its health."""
    if backend.name == "embedded":
        import moto

        return moto.__version__
    if backend.name == "localstack":
        from ..backend import localstack_health

        try:
            return localstack_health(backend.endpoint).get("version")
        except (OSError, ValueError):
            return None
    return None


def main(args) -> int:
    if args.readme:
        changed = table.update_readme()
        print("README.md: conformance table " + ("updated" if changed else "already up to date"))
        return 0
    import cloudlab

    backend = cloudlab.use_backend()
    claims = select(args.claim or None, args.topic or None)
    print(f"conformance: {len(claims)} claims on the {backend.name} backend ...", file=sys.stderr, flush=True)
    results = run(claims, jobs=args.jobs)
    record = table.as_record(results, backend.name, backend_version(backend))
    if args.json:
        print(json.dumps({"backend": backend.name, "version": record["version"],
                          "results": [r.as_dict() for r in results]}, indent=1, ensure_ascii=False))
    else:
        print(table.text_table(results))
    partial = bool(args.claim or args.topic)
    if args.record:
        if partial:
            print("--record needs the whole suite (no --claim/--topic)", file=sys.stderr)
            return 2
        print(f"recorded: {table.write_record(record)}", file=sys.stderr)
    if args.check:
        recorded = table.read_record(backend.name)
        if partial:
            recorded = {**recorded, "results": {k: v for k, v in recorded["results"].items() if k in record["results"]}}
        changed = table.differences(record, recorded)
        if changed:
            # A claim must differ twice, the second time alone, before CI fails: one busy moment
            # (or a backend's own hiccup) must not block a submission. Both runs are printed.
            again = [c for c in claims if record["results"].get(c.id) != recorded["results"].get(c.id)]
            print(f"\n{len(again)} claim(s) differ from the record; running them again, one at a time:",
                  *changed, sep="\n  ", file=sys.stderr)
            rerun = {r.id: r for r in run(again, jobs=1)}
            results = [rerun.get(r.id, r) for r in results]
            record = table.as_record(results, backend.name, record["version"])
            changed = table.differences(record, recorded)
        if changed:
            print(f"\nThe {backend.name} backend no longer behaves as recorded in {table.record_path(backend.name)}:",
                  *changed, "If the change is intended: re-run with --record, then --readme, and commit both.",
                  sep="\n  ", file=sys.stderr)
            return 1
        print(f"conformance: matches {table.record_path(backend.name).relative_to(table.REPO)}", file=sys.stderr)
    return 0


def add_parser(commands) -> None:
    parser = commands.add_parser("conformance", help="check the course's claims against the current backend")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    parser.add_argument("--claim", action="append", metavar="ID", help="run only this claim (repeatable)")
    parser.add_argument("--topic", action="append", metavar="NN", help="run only this topic's claims (repeatable)")
    parser.add_argument("--jobs", type=int, default=4, help="probes run at once (default 4)")
    parser.add_argument("--record", action="store_true", help="write docs/conformance/<backend>.json from this run")
    parser.add_argument("--check", action="store_true", help="exit 1 if this run differs from the recorded results")
    parser.add_argument("--readme", action="store_true", help="regenerate the README's table from the records (runs nothing)")
    parser.set_defaults(run=main)
