"""Write the upload-records data set of notebook 02 to CSV (deterministic: same seed, same file).

    python data/make_uploads.py                      # 20,000 records -> data/uploads.csv
    python data/make_uploads.py --records 100000 --out /tmp/uploads.csv

The generator itself is ``cloudlab.keydesign.make_uploads`` (notebooks call it directly, so
nothing large is committed): a month of uploads by 400 users, Zipf-skewed user activity
(a few heavy users), busier weekdays, two launch days at three times the traffic and a daily
cycle. Only Python's seeded ``random.Random`` is used.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from cloudlab.keydesign import make_uploads


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=20_000)
    parser.add_argument("--users", type=int, default=400)
    parser.add_argument("--month", default="2025-03")
    parser.add_argument("--seed", type=int, default=2025)
    parser.add_argument("--out", type=Path, default=Path(__file__).with_name("uploads.csv"))
    args = parser.parse_args(argv)
    frame = make_uploads(args.records, users=args.users, month=args.month, seed=args.seed)
    frame.to_csv(args.out, index=False)
    print(f"{len(frame):,} records, {frame['user'].nunique()} users, {frame['day'].nunique()} days -> {args.out}")


if __name__ == "__main__":
    main()
