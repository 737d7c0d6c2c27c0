"""Small printing and plotting helpers that keep notebook outputs readable and stable.

Introduced in notebook 01. AWS responses are full of values that change on every run
(resource ids, request ids, ETags, timestamps); printing them raw makes a notebook's saved
outputs differ on every run. These helpers print what a reader needs and mask the rest.
"""

from __future__ import annotations

import re

# Resource ids AWS (and the emulator) generate at random, e.g. vol-0abc..., i-0abc..., fs-...
_ID_PATTERN = re.compile(
    r"\b(vol|i|snap|ami|subnet|vpc|fs|fsmt|eni|sg|r|igw|rtb|acl)-[0-9a-f]{8,17}\b")
_ARN_ACCOUNT = re.compile(r"(arn:aws:[a-z0-9-]+:[a-z0-9-]*:)\d{12}")


def redact_ids(text: str) -> str:
    """Replace generated AWS resource ids in ``text`` by ``<vol-id>``, ``<i-id>`` and so on.

    Introduced in notebook 01. ``redact_ids("vol-0a1b2c3d4e5f60718 is attached to i-0123456789abcdef0")``
    gives ``'<vol-id> is attached to <i-id>'``. Account numbers inside ARNs become ``<account>``.
    """
    text = _ID_PATTERN.sub(lambda m: f"<{m.group(1)}-id>", str(text))
    return _ARN_ACCOUNT.sub(r"\1<account>", text)


def error_text(exc: BaseException) -> str:
    """``"Code: message"`` for a botocore ClientError, ``"TypeName: message"`` otherwise.

    Introduced in notebook 01. Request ids, HTTP headers and retry counts are left out and
    resource ids are masked with :func:`redact_ids`, so the text is the same on every run.
    """
    response = getattr(exc, "response", None)
    if isinstance(response, dict) and "Error" in response:
        error = response["Error"]
        return redact_ids(f"{error.get('Code', 'Unknown')}: {error.get('Message', '')}".rstrip())
    return redact_ids(f"{type(exc).__name__}: {exc}")


def show_error(exc: BaseException) -> None:
    """Print :func:`error_text` of ``exc``: the error code and message, without run-specific ids.

    Introduced in notebook 01. Use it in an ``except`` block, so the notebook shows what went
    wrong as a stable printed line instead of a stored traceback.
    """
    print(error_text(exc))


def show_fields(resource: dict, *keys: str, label: str | None = None) -> None:
    """Print selected fields of an AWS response dict, one ``key = value`` per line, ids masked.

    Introduced in notebook 01. Fields that are missing print as ``-``. Use it instead of
    printing a whole response (which holds request ids and timestamps).
    """
    if label:
        print(label)
    width = max(map(len, keys)) if keys else 0
    for key in keys:
        value = resource.get(key, "-")
        print(f"  {key:<{width}} = {redact_ids(value)}")


def loglog(frame, x: str, y: str, by: str, *, ax=None, title: str | None = None,
           xlabel: str | None = None, ylabel: str | None = None, marker: str = "o"):
    """Plot ``y`` against ``x`` on log-log axes, one line per value of column ``by``.

    Introduced in notebook 01. Returns the matplotlib Axes; call ``plt.show()`` after it so
    the cell's saved output is the picture, not an object's repr.
    """
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(6.4, 4.2))
    for name, group in frame.groupby(by, sort=False):
        group = group.sort_values(x)
        ax.plot(group[x], group[y], marker=marker, label=str(name))
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel(xlabel or x)
    ax.set_ylabel(ylabel or y)
    if title:
        ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    return ax


def compare_bars(labels, series: dict, *, ax=None, log: bool = True, xlabel: str = "",
                 title: str | None = None, errors: dict | None = None, annotate: str | None = "{:g}"):
    """Horizontal grouped bars: one group per label, one bar per entry of ``series``.

    Introduced in notebook 01. ``series`` maps a legend name to a list of values aligned with
    ``labels``; ``None`` or NaN leaves that bar out (no value to show, e.g. nothing citable).
    ``errors`` optionally maps a legend name to ``(lower, upper)`` error lists (for ranges).
    ``annotate`` is a format for the value printed at the end of each bar (``None``: no labels).
    On a log axis the bars start a decade below the smallest value, so short bars stay visible.
    Returns the matplotlib Axes.
    """
    import math

    import matplotlib.pyplot as plt

    labels = list(labels)
    if ax is None:
        _, ax = plt.subplots(figsize=(7.2, 0.3 * len(labels) * max(1, len(series)) + 1.4))
    height = 0.8 / max(1, len(series))
    everything: list[float] = []
    for index, (name, values) in enumerate(series.items()):
        positions, shown, lower, upper = [], [], [], []
        for row, value in enumerate(values):
            if value is None or (isinstance(value, float) and math.isnan(value)):
                continue
            positions.append(row + (index - (len(series) - 1) / 2) * height)
            shown.append(value)
            if errors and name in errors:
                lower.append(errors[name][0][row])
                upper.append(errors[name][1][row])
        xerr = [lower, upper] if errors and name in errors else None
        bars = ax.barh(positions, shown, height=height, label=name, xerr=xerr, capsize=3)
        if annotate:
            ends = [v + (upper[i] if xerr else 0) for i, v in enumerate(shown)]
            for bar, end, value in zip(bars, ends, shown):
                ax.annotate(annotate.format(value), (end, bar.get_y() + bar.get_height() / 2),
                            xytext=(4, 0), textcoords="offset points", va="center", fontsize=8)
        everything.extend(shown)
    ax.set_yticks(range(len(labels)), labels)
    ax.invert_yaxis()
    if log:
        ax.set_xscale("log")
        if everything:
            ax.set_xlim(min(everything) / 10, max(everything) * 10)
    ax.set_xlabel(xlabel)
    if title:
        ax.set_title(title)
    ax.grid(True, axis="x", which="both", alpha=0.3)
    ax.legend()
    return ax


def show_json(document, *, hide: tuple[str, ...] = (), keys_only: bool = False) -> None:
    """Print a JSON-like dict indented, with the values of keys in ``hide`` replaced by ``<key>``.

    Introduced in notebook 04 (job ids, SNS envelopes). Hidden keys are masked at any depth,
    so ids and timestamps generated per run never reach the saved output; ``keys_only=True``
    prints just the sorted top-level keys. Resource ids and ARN accounts are masked as in
    :func:`redact_ids`.
    """
    import json

    def mask(value):
        if isinstance(value, dict):
            return {k: (f"<{k}>" if k in hide else mask(v)) for k, v in value.items()}
        if isinstance(value, list):
            return [mask(v) for v in value]
        return value

    if keys_only:
        print(sorted(document))
        return
    print(redact_ids(json.dumps(mask(document), indent=1, ensure_ascii=False, default=str)))


_REQUEST_ID = re.compile(r"\b[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b")
_MEASURED = re.compile(r"((?:Duration|Max Memory Used): )[\d.]+ (ms|MB)")
_TIMESTAMP = re.compile(r"\b\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z?\b")


def show_log(text: str) -> None:
    """Print a Lambda log (INIT_START, START, END, REPORT lines) with run-specific values masked.

    Introduced in notebook 03. Request ids become ``<request-id>``, timestamps ``<time>``, and
    the measured figures of REPORT lines (durations, memory used) ``<n> ms`` / ``<n> MB``;
    configured values (``Memory Size``) and the shape of every line stay visible.
    """
    text = _REQUEST_ID.sub("<request-id>", str(text))
    text = _TIMESTAMP.sub("<time>", text)
    text = _MEASURED.sub(lambda m: f"{m.group(1)}<n> {m.group(2)}", text)
    print(redact_ids(text.replace("\t", "  ").rstrip()))


__all__ = ["redact_ids", "error_text", "show_error", "show_fields", "loglog", "compare_bars", "show_json", "show_log"]
