"""Storage models in miniature: simulated instances, their disks, and what outlives them.

Introduced in notebook 01 (storage models). Everything here runs on the student's machine:

- :class:`Instance` is an EC2 instance stand-in whose *instance store* is a private temporary
  directory. Rebooting keeps it; stopping or terminating the instance wipes it, as on EC2.
- :class:`InstanceStore`, :class:`SharedFolder` and :class:`S3Storage` are three places an
  application can keep files (instance-local disk, a shared network filesystem such as EFS,
  and S3), all with the same ``save`` / ``load`` / ``names`` interface.
- :class:`UploadService` is a tiny "web app" that keeps uploads in one of those places, and
  :class:`RoundRobin` is the load balancer in front of several copies of it.
- :func:`measure_small_vs_large` times many small objects against one large one with the
  same total bytes, on local disk and on S3.
- :func:`count_requests` counts the HTTP requests a boto3 client sends, by operation, and
  :func:`log_requests` lists them (method and path).
- :func:`measure_parallel_gets` times the same GETs sent one at a time and from N threads.
- :func:`storage_facts` loads the checked latency/throughput table ``cloudlab/data/storage_performance.csv``,
  and :func:`durability_facts` the checked durability table ``cloudlab/data/storage_durability.csv``.
"""

from __future__ import annotations

import itertools
import os
import shutil
import tempfile
import time
from collections import Counter
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from . import tempdirs
from .hooks import client_hooks

# Package data (shipped in the wheel too), so a non-editable install finds it.
_DATA_DIR = Path(__file__).resolve().parent / "data"


def _relative(name: str) -> PurePosixPath:
    """``name`` as a relative POSIX path that cannot climb out of its root."""
    path = PurePosixPath(name)
    if path.is_absolute() or ".." in path.parts or not path.parts:
        raise ValueError(f"use a relative file name without '..', not {name!r}")
    return path


class Instance:
    """A simulated EC2 instance with its own instance store (a private temporary directory).

    Introduced in notebook 01. ``state`` follows EC2's names: ``running``, ``stopped``,
    ``terminated``. The instance store lives exactly as long as the instance keeps running on
    the same host: :meth:`reboot` keeps it (a reboot stays on the same host), :meth:`stop` and
    :meth:`terminate` delete it, and :meth:`start` brings the instance back with a new, empty
    one (on EC2 a stopped instance usually restarts on other hardware). Paths printed by this
    class are relative, so outputs do not change between runs.
    """

    def __init__(self, name: str):
        self.name = name
        self.state = "running"
        self._disk: Path | None = tempdirs.make("instance", name)

    def __repr__(self) -> str:
        return f"Instance({self.name!r}, state={self.state!r})"

    @property
    def instance_store(self) -> Path:
        """The root of this instance's local disk; only valid while the instance runs."""
        if self.state != "running" or self._disk is None:
            raise RuntimeError(f"{self.name} is {self.state}: its instance store is gone")
        return self._disk

    def _wipe(self) -> None:
        if self._disk is not None:
            shutil.rmtree(self._disk, ignore_errors=True)
            self._disk = None

    def reboot(self) -> None:
        """Reboot a running instance: same host, so the instance store keeps its files."""
        if self.state != "running":
            raise RuntimeError(f"{self.name} is {self.state}: only a running instance can be rebooted")

    def stop(self) -> None:
        """Stop the instance. Its instance store is lost (EBS and S3 data are not)."""
        if self.state == "terminated":
            raise RuntimeError(f"{self.name} is terminated; it cannot be stopped")
        self._wipe()
        self.state = "stopped"

    def start(self) -> None:
        """Start a stopped instance: it gets a new, empty instance store."""
        if self.state == "terminated":
            raise RuntimeError(f"{self.name} is terminated; launch a new instance instead")
        if self.state == "stopped":
            self._disk = tempdirs.make("instance", self.name)
            self.state = "running"

    def terminate(self) -> None:
        """Terminate the instance for good; its instance store is deleted."""
        self._wipe()
        self.state = "terminated"

    def __del__(self) -> None:  # tidy up temporary directories when the notebook forgets one
        try:
            self._wipe()
        except Exception:
            pass


class InstanceStore:
    """Files on one instance's local disk (instance store, or any instance-scoped disk).

    Introduced in notebook 01. Another instance cannot see these files, and they vanish
    when the instance stops.
    """

    kind = "instance store"

    def __init__(self, instance: Instance, folder: str = "data"):
        self.instance = instance
        self.folder = _relative(folder)

    def _path(self, name: str) -> Path:
        return self.instance.instance_store / self.folder / _relative(name)

    def save(self, name: str, data: bytes) -> None:
        path = self._path(name)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)

    def load(self, name: str) -> bytes:
        try:
            return self._path(name).read_bytes()
        except FileNotFoundError:
            # The real message holds a temporary path that changes every run; say it stably.
            raise FileNotFoundError(f"/{self.folder}/{name} does not exist on {self.instance.name}'s disk") from None

    def names(self) -> list[str]:
        root = self.instance.instance_store / self.folder
        return sorted(str(p.relative_to(root).as_posix()) for p in root.rglob("*") if p.is_file()) if root.exists() else []


class SharedFolder:
    """A directory several simulated instances mount at once: a stand-in for EFS over NFS.

    Introduced in notebook 01. Every instance that uses the same ``SharedFolder`` (or the same
    ``path``) sees the same files, because they all reach the same storage; on AWS the storage
    is the EFS service and every read or write is a network round trip.
    """

    kind = "shared file system"

    def __init__(self, path: str | os.PathLike | None = None):
        if path is None:  # a folder of its own: removed with this object, or at exit at the latest
            self.root = tempdirs.make("efs")
            self._removal = tempdirs.remove_with(self, self.root)
        else:
            self.root = Path(path)
        self.root.mkdir(parents=True, exist_ok=True)

    def save(self, name: str, data: bytes) -> None:
        path = self.root / _relative(name)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)

    def load(self, name: str) -> bytes:
        try:
            return (self.root / _relative(name)).read_bytes()
        except FileNotFoundError:
            raise FileNotFoundError(f"{name} does not exist on the shared file system") from None

    def names(self) -> list[str]:
        return sorted(str(p.relative_to(self.root).as_posix()) for p in self.root.rglob("*") if p.is_file())


class S3Storage:
    """Files kept as S3 objects under ``prefix`` in ``bucket``: shared by every instance.

    Introduced in notebook 01. ``save`` is one PutObject, ``load`` one GetObject, ``names``
    one ListObjectsV2 per page of up to 1,000 keys.
    """

    kind = "S3"

    def __init__(self, bucket: str, prefix: str = "", s3=None):
        import boto3

        self.bucket, self.prefix = bucket, prefix
        self.s3 = s3 or boto3.client("s3")

    def save(self, name: str, data: bytes) -> None:
        self.s3.put_object(Bucket=self.bucket, Key=self.prefix + name, Body=data)

    def load(self, name: str) -> bytes:
        try:
            return self.s3.get_object(Bucket=self.bucket, Key=self.prefix + name)["Body"].read()
        except self.s3.exceptions.NoSuchKey:
            raise FileNotFoundError(f"s3://{self.bucket}/{self.prefix}{name} does not exist") from None

    def names(self) -> list[str]:
        keys = []
        for page in self.s3.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=self.prefix):
            keys += [item["Key"][len(self.prefix):] for item in page.get("Contents", [])]
        return sorted(keys)


class UploadService:
    """A tiny web application running on one instance: users upload files and download them.

    Introduced in notebook 01. Where it keeps the files is the ``storage`` it was given
    (default: the instance's own disk, the way an app written for one server does it).
    """

    def __init__(self, instance: Instance, storage=None):
        self.instance = instance
        self.storage = storage if storage is not None else InstanceStore(instance)

    @property
    def name(self) -> str:
        return self.instance.name

    def upload(self, filename: str, data: bytes) -> str:
        self.storage.save(f"uploads/{filename}", data)
        return f"stored {filename} ({len(data)} bytes) in {self.storage.kind}"

    def download(self, filename: str) -> bytes:
        return self.storage.load(f"uploads/{filename}")


@dataclass
class Response:
    """What the load balancer hands back: which instance served the request, and the outcome."""

    served_by: str
    ok: bool
    body: object = None
    error: BaseException | None = None

    def __str__(self) -> str:
        if self.ok:
            shown = self.body.decode(errors="replace") if isinstance(self.body, bytes) else self.body
            return f"[{self.served_by}] 200 {shown}"
        return f"[{self.served_by}] 500 {type(self.error).__name__}: {self.error}"


class RoundRobin:
    """A load balancer that sends each request to the next service in turn.

    Introduced in notebook 01. ``upload`` and ``download`` never raise: a failure inside the
    service comes back as a :class:`Response` with ``ok=False``, as a 500 would.
    """

    def __init__(self, services):
        self.services = list(services)
        self._next = itertools.cycle(self.services)

    def _call(self, method: str, *args) -> Response:
        service = next(self._next)
        try:
            return Response(service.name, True, getattr(service, method)(*args))
        except Exception as error:  # noqa: BLE001 - a server error, reported to the client
            return Response(service.name, False, error=error)

    def upload(self, filename: str, data: bytes) -> Response:
        return self._call("upload", filename, data)

    def download(self, filename: str) -> Response:
        return self._call("download", filename)


@contextmanager
def count_requests(client):
    """Count the HTTP requests ``client`` sends inside the ``with`` block, by operation name.

    Introduced in notebook 01. Yields a :class:`collections.Counter`, e.g.
    ``Counter({'GetObject': 100, 'ListObjectsV2': 1})``. Retries count as extra requests,
    because each one is a request S3 answers (and bills).
    """
    counts: Counter = Counter()

    def _count(event_name=None, **kwargs):
        counts[event_name.rsplit(".", 1)[-1]] += 1

    with client_hooks(client, {"before-send.*": _count}):
        yield counts


@contextmanager
def log_requests(client):
    """Record the HTTP requests ``client`` sends inside the ``with`` block, as text lines.

    Introduced in notebook 01, to show that every S3 call is one HTTP request. Yields a list
    that fills with lines like ``"PUT /bucket/models/a.pkl  (PutObject)"``: method, path and
    query (host and port left out, so the lines are the same on every run), and operation.
    On the emulator the bucket is the first part of the path (path-style addressing); on AWS
    it is usually part of the host name instead.
    """
    from urllib.parse import unquote, urlsplit

    lines: list[str] = []

    def _log(request=None, event_name=None, **kwargs):
        url = urlsplit(request.url)
        target = unquote(url.path) + (f"?{unquote(url.query)}" if url.query else "")
        lines.append(f"{request.method} {target}  ({event_name.rsplit('.', 1)[-1]})")

    with client_hooks(client, {"before-send.*": _log}):
        yield lines


def _split(total_bytes: int, count: int) -> list[bytes]:
    size, extra = divmod(total_bytes, count)
    block = os.urandom(size + 1)
    return [block[: size + (1 if i < extra else 0)] for i in range(count)]


def _best_read_time(parts: list[bytes], read_one, repeats: int) -> float:
    """Best of ``repeats`` timings of reading every part back (checking all bytes arrived)."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        got = sum(read_one(i) for i in range(len(parts)))
        times.append(time.perf_counter() - start)
        assert got == sum(map(len, parts))
    return min(times)


def _time_disk(folder: Path, parts: list[bytes], tag: str, repeats: int) -> tuple[float, float]:
    target = folder / tag
    target.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    for i, part in enumerate(parts):
        with open(target / f"part-{i:05d}", "wb") as handle:
            handle.write(part)
            handle.flush()
    written = time.perf_counter() - start

    def read_one(i: int) -> int:
        with open(target / f"part-{i:05d}", "rb") as handle:
            return len(handle.read())

    return written, _best_read_time(parts, read_one, repeats)


def _time_s3(s3, bucket: str, parts: list[bytes], tag: str, repeats: int, keep: bool) -> tuple[float, float]:
    start = time.perf_counter()
    for i, part in enumerate(parts):
        s3.put_object(Bucket=bucket, Key=f"{tag}/part-{i:05d}", Body=part)
    written = time.perf_counter() - start
    best_read = _best_read_time(
        parts, lambda i: len(s3.get_object(Bucket=bucket, Key=f"{tag}/part-{i:05d}")["Body"].read()), repeats)
    if not keep:
        keys = [{"Key": f"{tag}/part-{i:05d}"} for i in range(len(parts))]
        for start in range(0, len(keys), 1000):
            s3.delete_objects(Bucket=bucket, Delete={"Objects": keys[start:start + 1000], "Quiet": True})
    return written, best_read


def measure_small_vs_large(counts=(1, 10, 100, 1000), total_bytes: int = 1 << 20, *,
                           s3=None, bucket: str | None = None, folder=None, repeats: int = 1,
                           s3_label: str = "S3 (emulator)", keep: bool = False):
    """Time writing and reading ``total_bytes`` split into N objects, for each N in ``counts``.

    Introduced in notebook 01. Measures local disk (files in ``folder``, default a temporary
    directory) and, if ``bucket`` is given, S3 (one PutObject / GetObject per object, through
    ``s3`` or a new ``boto3.client("s3")``). Each store is written once and read ``repeats``
    times; the fastest read is kept, the usual way to take noise out of a micro-benchmark.

    The S3 objects (keys ``n<N>/part-<i>``) are deleted after measuring unless ``keep`` is true.
    ``s3_label`` names the S3 rows (say ``"S3 (AWS)"`` when you run it against AWS).

    Returns a pandas DataFrame with one row per (store, objects): ``store``, ``objects``,
    ``object_bytes``, ``total_bytes``, ``requests`` (S3 calls per pass, 0 for disk),
    ``write_s``, ``read_s``, ``read_ms_per_object``.
    """
    import pandas as pd

    if s3 is None and bucket is not None:
        import boto3

        s3 = boto3.client("s3")
    own_folder = folder is None
    root = Path(tempfile.mkdtemp(prefix="cloudlab-measure-")) if own_folder else Path(folder)
    rows = []
    try:
        for count in counts:
            parts = _split(total_bytes, count)
            stores = [("local disk", lambda tag: _time_disk(root, parts, tag, repeats))]
            if bucket is not None:
                stores.append((s3_label, lambda tag: _time_s3(s3, bucket, parts, tag, repeats, keep)))
            for store, timer in stores:
                best = timer(f"n{count}")
                rows.append({"store": store, "objects": count, "object_bytes": total_bytes // count,
                             "total_bytes": total_bytes, "requests": count if store == s3_label else 0,
                             "write_s": best[0], "read_s": best[1],
                             "read_ms_per_object": 1000 * best[1] / count})
    finally:
        if own_folder:
            shutil.rmtree(root, ignore_errors=True)
    return pd.DataFrame(rows)


def measure_parallel_gets(s3, bucket: str, objects: int = 200, object_bytes: int = 1024,
                          threads=(1, 2, 4, 8, 16), repeats: int = 2, prefix: str = "parallel/",
                          added_latency_s: float = 0.0):
    """Time GETs of ``objects`` small objects sent from 1 thread and from N threads.

    Introduced in notebook 01. Puts ``objects`` objects of ``object_bytes`` bytes under
    ``prefix`` in ``bucket``, then for each N in ``threads`` reads all of them back with a pool
    of N threads sharing the client ``s3`` (boto3 clients are thread-safe; the client's
    connection pool must allow N connections, see ``botocore.config.Config(max_pool_connections)``).
    Each N is timed ``repeats`` times and the fastest kept. The objects are deleted afterwards.

    ``added_latency_s`` delays every GetObject by that many seconds before it is sent: a
    stand-in for a network round trip, which a local emulator does not have. While a request
    waits on the network its thread holds no CPU, which is the case where threads help.

    Returns a DataFrame with one row per N: ``threads``, ``gets``, ``seconds``,
    ``gets_per_s`` and ``speedup`` (sequential time / this time).
    """
    from concurrent.futures import ThreadPoolExecutor

    import pandas as pd

    if objects < 1 or object_bytes < 0 or not threads or min(threads) < 1:
        raise ValueError("objects and every thread count must be at least 1, object_bytes at least 0")
    keys = [f"{prefix}{i:05d}" for i in range(objects)]
    body = os.urandom(object_bytes)
    for key in keys:
        s3.put_object(Bucket=bucket, Key=key, Body=body)

    def get(key: str) -> int:
        return len(s3.get_object(Bucket=bucket, Key=key)["Body"].read())

    def wait_for_network(**_) -> None:
        time.sleep(added_latency_s)  # a simulated round trip, not a wait for a condition

    def best_time(count: int) -> float:
        best = float("inf")
        with ThreadPoolExecutor(max_workers=count) as pool:
            for _ in range(repeats):
                start = time.perf_counter()
                got = sum(pool.map(get, keys)) if count > 1 else sum(map(get, keys))
                best = min(best, time.perf_counter() - start)
                assert got == objects * object_bytes
        return best

    hooks = {"before-send.s3.GetObject": wait_for_network} if added_latency_s > 0 else {}
    try:
        with client_hooks(s3, hooks):
            seconds = {count: best_time(count) for count in threads}
    finally:
        for start in range(0, len(keys), 1000):
            s3.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": k} for k in keys[start:start + 1000]],
                                                     "Quiet": True})
    rows = [{"threads": count, "gets": objects, "seconds": best, "gets_per_s": objects / best}
            for count, best in seconds.items()]
    frame = pd.DataFrame(rows)
    sequential = frame.loc[frame["threads"] == min(threads), "seconds"].iloc[0]
    frame["speedup"] = sequential / frame["seconds"]
    return frame


def durability_facts():
    """What survives a reboot, a stop, a terminate and the loss of an AZ, per storage, with AWS's figures.

    Introduced in notebook 01. Loads ``cloudlab/data/storage_durability.csv``: one row per storage
    (``storage``), ``survives_reboot`` / ``survives_stop`` / ``survives_terminate`` /
    ``survives_az_loss`` (``yes``, ``no`` or a short condition), AWS's ``designed_durability``
    (empty where AWS publishes none), ``note`` and ``source`` (a row of ``docs/aws-facts.md``).
    """
    import pandas as pd

    return pd.read_csv(_DATA_DIR / "storage_durability.csv", dtype=str).fillna("")


def storage_facts():
    """The checked storage performance table (``cloudlab/data/storage_performance.csv``) as a DataFrame.

    Introduced in notebook 01. One row per (storage, metric): the lecture's value or range
    (``lecture_low``/``lecture_high``, empty where the lecture gives none), the current value
    (``current``, empty where no checked source gives one), ``unit``, a note on what the
    current value means, and ``source`` (a row of the course's checked facts file, ``aws-facts.md``, or the lecture).
    """
    import pandas as pd

    return pd.read_csv(_DATA_DIR / "storage_performance.csv")


__all__ = ["Instance", "InstanceStore", "SharedFolder", "S3Storage", "UploadService", "Response",
           "RoundRobin", "count_requests", "log_requests", "measure_small_vs_large", "measure_parallel_gets",
           "storage_facts", "durability_facts"]
