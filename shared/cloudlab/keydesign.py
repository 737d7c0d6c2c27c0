"""S3 key design: a realistic upload data set, two key layouts, and measured LIST queries.

Introduced in notebook 02 (S3 key design). The pieces:

- :func:`make_uploads`: a deterministic, seeded data set of upload records (a month of
  uploads by a few hundred users, with a few heavy users and busy days);
  ``data/make_uploads.py`` writes it to CSV.
- :data:`LAYOUTS` and :func:`key_for`: the lecture's two layouts,
  ``uploads/{user}/{day}_...`` and ``uploads/{day}/{user}_...``.
- :func:`load`: PUT one small object per record.
- :func:`list_all`: the paginated ``ListObjectsV2`` loop, counting requests.
- :func:`run_query` and :func:`plan_query`: "everything for one user" / "everything for one
  day" on either layout, measured on the emulator (requests, objects scanned, objects
  returned, wall time) or computed from a sorted key list (same counts, no emulator), which
  gives the numbers for data sets too big to load.
- :func:`hot_prefix_load`: which key range receives the writes of the busiest hour, per layout.
"""

from __future__ import annotations

import bisect
import datetime as dt
import json
import math
import random
import threading
import time
from dataclasses import dataclass, field


PAGE_SIZE = 1000  # ListObjectsV2 returns at most 1,000 keys per request

LAYOUTS = {
    "by_user": "uploads/{user}/{day}_{upload_id}.{ext}",
    "by_date": "uploads/{day}/{user}_{upload_id}.{ext}",
}

_KINDS = [  # extension, share of uploads, median size in bytes
    ("jpg", 0.55, 2_400_000),
    ("png", 0.15, 900_000),
    ("pdf", 0.20, 350_000),
    ("mp4", 0.10, 48_000_000),
]


def make_uploads(records: int = 20_000, *, users: int = 400, month: str = "2025-03", seed: int = 2025):
    """A month of upload records as a pandas DataFrame, the same for the same arguments.

    Introduced in notebook 02. Columns: ``upload_id``, ``user``, ``uploaded_at`` (ISO second,
    UTC), ``day``, ``ext``, ``size_bytes``. The shape is realistic rather than uniform:

    - user activity follows a Zipf law (exponent 1): the top three users make over a
      quarter of all uploads, most users a handful;
    - weekdays are busier than weekends, and two launch days get three times the traffic;
    - uploads follow a daily cycle, peaking in the afternoon (UTC).

    Only Python's ``random.Random(seed)`` is used, so the records do not depend on numpy's version.
    """
    import pandas as pd

    rng = random.Random(seed)
    year, mon = map(int, month.split("-"))
    first = dt.date(year, mon, 1)
    days = [first + dt.timedelta(days=i) for i in range(31) if (first + dt.timedelta(days=i)).month == mon]
    launch_days = {days[9], days[23]}
    day_weight = [(3.0 if d in launch_days else 1.0) * (0.6 if d.weekday() >= 5 else 1.0) for d in days]
    hour_weight = [0.3 + math.exp(-((h - 15) ** 2) / 18) for h in range(24)]
    user_names = [f"u{i:04d}" for i in range(1, users + 1)]
    shuffled = user_names[:]
    rng.shuffle(shuffled)  # heavy users are not simply u0001, u0002, ...
    user_weight = [1 / (rank + 1) ** 1.0 for rank in range(users)]
    exts, ext_weight, medians = zip(*[(e, w, m) for e, w, m in _KINDS])

    who = rng.choices(shuffled, weights=user_weight, k=records)
    which_day = rng.choices(days, weights=day_weight, k=records)
    hours = rng.choices(range(24), weights=hour_weight, k=records)
    kinds = rng.choices(range(len(exts)), weights=ext_weight, k=records)
    rows = []
    for index in range(records):
        moment = dt.datetime.combine(which_day[index], dt.time(hours[index], rng.randrange(60), rng.randrange(60)))
        kind = kinds[index]
        size = max(1_000, int(medians[kind] * rng.lognormvariate(0, 0.8)))
        rows.append((f"{rng.getrandbits(48):012x}", who[index], moment.strftime("%Y-%m-%dT%H:%M:%SZ"),
                     which_day[index].isoformat(), exts[kind], size))
    frame = pd.DataFrame(rows, columns=["upload_id", "user", "uploaded_at", "day", "ext", "size_bytes"])
    return frame.sort_values(["uploaded_at", "upload_id"], ignore_index=True)


def key_for(record, layout: str) -> str:
    """The S3 key of one upload record (a dict or a DataFrame row) in ``layout``.

    Introduced in notebook 02. ``layout`` is a name in :data:`LAYOUTS` or a format string
    using the record's columns.
    """
    template = LAYOUTS.get(layout, layout)
    return template.format(**{name: record[name] for name in ("user", "day", "upload_id", "ext")})


def keys_for(records, layout: str) -> list[str]:
    """Every record's key in ``layout``, sorted as S3 lists them (by UTF-8 bytes)."""
    return sorted((key_for(row, layout) for row in records.to_dict("records")), key=lambda k: k.encode())


def load(s3, bucket: str, records, layouts, *, threads: int = 1) -> int:
    """PUT one small JSON object (the record itself) per record and layout; returns the PUT count.

    Introduced in notebook 02. Writing every record under several layouts is the "duplicate
    hierarchy" way to serve several access patterns: one PUT per record per layout.
    ``threads > 1`` spreads the PUTs over threads, each with its own client (boto3 clients are
    thread-safe, but one client per thread avoids sharing a connection pool). Whether threads
    help on the emulator depends on where it runs (in the same Python process, client and
    server share one interpreter lock); notebook 02 measures both for the student's setup.
    """
    import boto3

    if isinstance(layouts, str):
        layouts = [layouts]
    work = [(key_for(row, layout), json.dumps(row, separators=(",", ":")).encode())
            for row in records.to_dict("records") for layout in layouts]
    if threads <= 1:
        for key, body in work:
            s3.put_object(Bucket=bucket, Key=key, Body=body, ContentType="application/json")
        return len(work)
    local = threading.local()

    def put(item):
        if not hasattr(local, "client"):
            local.client = boto3.session.Session().client("s3")
        local.client.put_object(Bucket=bucket, Key=item[0], Body=item[1], ContentType="application/json")

    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(put, work))
    return len(work)


@dataclass
class Listing:
    """What a paginated LIST returned: keys, common prefixes and how many requests it took."""

    keys: list[str] = field(default_factory=list)
    common_prefixes: list[str] = field(default_factory=list)
    requests: int = 0


def list_all(s3, bucket: str, prefix: str = "", delimiter: str | None = None, page_size: int = PAGE_SIZE) -> Listing:
    """Every key (and CommonPrefix) under ``prefix``, following ``NextContinuationToken``.

    Introduced in notebook 02. One ``ListObjectsV2`` request returns at most 1,000 keys;
    ``requests`` counts the pages fetched, which is what AWS bills (tier-1 requests).
    """
    listing = Listing()
    arguments = {"Bucket": bucket, "Prefix": prefix, "MaxKeys": page_size}
    if delimiter:
        arguments["Delimiter"] = delimiter
    while True:
        page = s3.list_objects_v2(**arguments)
        listing.requests += 1
        listing.keys.extend(item["Key"] for item in page.get("Contents", []))
        listing.common_prefixes.extend(item["Prefix"] for item in page.get("CommonPrefixes", []))
        if not page.get("IsTruncated"):
            return listing
        arguments["ContinuationToken"] = page["NextContinuationToken"]


# --- queries ------------------------------------------------------------------------------

QUERIES = ("user", "day")


def _matches(key: str, field_name: str, value: str, layout: str) -> bool:
    parts = key.split("/")
    if LAYOUTS[layout].startswith("uploads/{" + field_name + "}"):
        return parts[1] == value
    name = parts[2]
    return name.startswith(value + "_")


def query_plan(layout: str, field_name: str, value: str) -> tuple[str, str]:
    """How a query runs on a layout: (strategy, prefix).

    ``"prefix"``: the value is the first level under ``uploads/``, so one prefix LIST returns
    exactly the matches. ``"scan"``: it is not, so the whole ``uploads/`` hierarchy is listed
    and filtered in the client.
    """
    if LAYOUTS[layout].startswith("uploads/{" + field_name + "}"):
        return "prefix", f"uploads/{value}/"
    return "scan", "uploads/"


def run_query(s3, bucket: str, layout: str, field_name: str, value: str) -> dict:
    """Answer "everything for one user" or "one day" on the emulator, measured.

    Introduced in notebook 02. Returns a dict with ``layout``, ``query``, ``strategy``,
    ``list_requests``, ``objects_scanned`` (keys the LIST responses carried), ``objects_returned``
    (keys that match) and ``seconds`` (wall time).
    """
    strategy, prefix = query_plan(layout, field_name, value)
    started = time.perf_counter()
    listing = list_all(s3, bucket, prefix)
    found = [k for k in listing.keys if _matches(k, field_name, value, layout)]
    seconds = time.perf_counter() - started
    return {"layout": layout, "query": f"one {field_name}", "strategy": strategy,
            "list_requests": listing.requests, "objects_scanned": len(listing.keys),
            "objects_returned": len(found), "seconds": seconds}


def plan_query(sorted_keys: list[str], layout: str, field_name: str, value: str, page_size: int = PAGE_SIZE) -> dict:
    """The counts :func:`run_query` would measure, computed from the sorted keys alone.

    Introduced in notebook 02. A LIST returns the keys that start with the prefix, in order,
    ``page_size`` per request, so its cost depends only on how many keys share the prefix.
    Used to size queries on data sets too large to load into an emulator.
    """
    strategy, prefix = query_plan(layout, field_name, value)
    encoded = [k.encode() for k in sorted_keys] if sorted_keys and isinstance(sorted_keys[0], str) else sorted_keys
    low = bisect.bisect_left(encoded, prefix.encode())
    high = bisect.bisect_left(encoded, prefix.encode() + b"\xff")
    scanned = high - low
    returned = sum(1 for k in encoded[low:high] if _matches(k.decode(), field_name, value, layout))
    return {"layout": layout, "query": f"one {field_name}", "strategy": strategy,
            "list_requests": max(1, math.ceil(scanned / page_size)), "objects_scanned": scanned,
            "objects_returned": returned}


# --- request rates per prefix -------------------------------------------------------------

PUT_LIMIT_PER_PREFIX = 3_500   # PUT/COPY/POST/DELETE per second per partitioned prefix (aws-facts.md)
GET_LIMIT_PER_PREFIX = 5_500   # GET/HEAD per second per partitioned prefix (aws-facts.md)


def hot_prefix_load(records, layout: str) -> dict:
    """Where the writes of the busiest hour land in the bucket's key order, for one layout.

    Introduced in notebook 02. S3 partitions a bucket by ranges of keys in sorted order, and it
    can split a range between any two keys, after any character, not only at ``/``; it splits
    when it sees sustained load, gradually. A new bucket, like a key range nothing was written
    to before, starts as one partition serving 3,500 PUT/s.

    The model: by the busiest hour, S3 has split the key space at every key written before
    that hour's day began (the best its earlier traffic could have bought). The hour's new keys
    fall into the gaps between those older keys; writes that land in the same gap share one
    partition until S3 splits again. Returns

    - ``layout``, ``busiest_hour``, ``writes`` (in that hour);
    - ``key_ranges``: how many gaps the hour's writes fall into;
    - ``hottest_range``: the longest common prefix of the keys written into the busiest gap
      (any characters, e.g. ``uploads/u0062/2025-03-10_``), and its ``hottest_share`` of the writes;
    - ``max_total_put_rate``: the total upload rate (PUT/s) at which, with the same shape of
      traffic, the hottest range reaches 3,500 PUT/s, once S3 has split at the older keys;
    - ``new_bucket_put_rate``: 3,500, the rate for all writes to a bucket S3 has not split yet,
      whatever the layout.
    """
    ranges = hot_ranges(records, layout)
    hottest = ranges.iloc[0]
    share = float(hottest["share"])
    return {"layout": layout, "busiest_hour": hottest["busiest_hour"], "writes": int(ranges["writes"].sum()),
            "key_ranges": len(ranges), "hottest_range": hottest["range"],
            "hottest_share": round(share, 3), "max_total_put_rate": int(PUT_LIMIT_PER_PREFIX / share),
            "new_bucket_put_rate": PUT_LIMIT_PER_PREFIX}


def hot_ranges(records, layout: str):
    """Every key range the busiest hour's writes fall into, busiest first (see :func:`hot_prefix_load`).

    Introduced in notebook 02. A DataFrame with ``range`` (the longest common prefix of the
    keys written into it), ``writes``, ``share`` of the hour's writes and ``busiest_hour``.
    """
    import os

    import pandas as pd

    hours = records["uploaded_at"].str.slice(0, 13)
    busiest = hours.value_counts().sort_index().idxmax()
    older = sorted(key_for(row, layout).encode() for row in records[records["day"] < busiest[:10]].to_dict("records"))
    gaps: dict[int, list[str]] = {}
    for row in records[hours == busiest].to_dict("records"):
        key = key_for(row, layout)
        gaps.setdefault(bisect.bisect_left(older, key.encode()), []).append(key)
    total = sum(len(keys) for keys in gaps.values())
    rows = [{"range": os.path.commonprefix(keys) if len(keys) > 1 else keys[0], "writes": len(keys),
             "share": len(keys) / total, "busiest_hour": busiest + ":00Z"} for keys in gaps.values()]
    return pd.DataFrame(rows).sort_values(["writes", "range"], ascending=[False, True], ignore_index=True)


__all__ = ["LAYOUTS", "PAGE_SIZE", "QUERIES", "PUT_LIMIT_PER_PREFIX", "GET_LIMIT_PER_PREFIX", "make_uploads",
           "key_for", "keys_for", "load", "Listing", "list_all", "query_plan", "run_query", "plan_query",
           "hot_prefix_load", "hot_ranges"]
