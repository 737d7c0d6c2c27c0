"""``backend serve``'s state file (serve.json): replaced in one step, and waited for with a deadline.

A kernel that starts while the server is (re)writing the file must read a whole file, or it
would start an emulator of its own and not share the served one.
"""

from __future__ import annotations

import json
import threading
import time

import pytest

from cloudlab.backend import serve
from cloudlab.backend.embedded import EmbeddedServer

WRITES = 500  # the old write_text version showed a partial file on nearly every read


def test_the_state_file_is_never_seen_half_written(tmp_path):
    state = tmp_path / "serve.json"
    serve.write_state(state, "http://127.0.0.1:1", 1)
    done, seen, bad = threading.Event(), [], []

    def read_until_done() -> None:
        while not done.is_set():
            try:
                seen.append(json.loads(state.read_text())["url"])
            except (OSError, ValueError, KeyError) as error:
                bad.append(repr(error))

    reader = threading.Thread(target=read_until_done)
    reader.start()
    try:
        for number in range(WRITES):
            serve.write_state(state, f"http://127.0.0.1:{number % 60000 + 1}" + "/" * (number % 500), 1)
    finally:
        done.set()
        reader.join()
    assert not bad, f"{len(bad)} of {len(bad) + len(seen)} reads saw a partial file, e.g. {bad[0]}"
    assert len(seen) >= 20  # the reader really ran alongside the writer
    assert [path.name for path in tmp_path.iterdir()] == ["serve.json"]  # no temporary file left


def test_the_state_file_is_renamed_into_place(tmp_path, monkeypatch):
    replaced = []
    real_replace = serve.os.replace
    monkeypatch.setattr(serve.os, "replace", lambda source, target: (replaced.append((source, target)),
                                                                    real_replace(source, target))[1])
    state = tmp_path / "folder" / "serve.json"
    serve.write_state(state, "http://127.0.0.1:5", 42)
    [(source, target)] = replaced
    assert str(target) == str(state) and str(source).startswith(str(state.parent))  # same file system
    assert json.loads(state.read_text()) == {"url": "http://127.0.0.1:5", "pid": 42}


def test_waiting_for_a_server_that_never_writes_fails_clearly(tmp_path):
    started = time.monotonic()
    with pytest.raises(TimeoutError, match=r"no emulator was served within 0.5 s: .*serve.json: it is missing"):
        serve.wait_until_served(0.5, tmp_path / "serve.json")
    assert time.monotonic() - started < 30
    serve.write_state(tmp_path / "serve.json", "http://127.0.0.1:9", 1)  # a stale file: nothing answers there
    with pytest.raises(TimeoutError, match=r"it names http://127.0.0.1:9, which does not answer"):
        serve.wait_until_served(0.5, tmp_path / "serve.json")


def test_waiting_stops_at_once_when_the_server_exits(tmp_path):
    with pytest.raises(TimeoutError, match="exited before it served"):
        serve.wait_until_served(600, tmp_path / "serve.json", still_starting=lambda: False)


def test_waiting_returns_the_url_of_a_healthy_server(tmp_path):
    server = EmbeddedServer().start()
    try:
        serve.write_state(tmp_path / "serve.json", server.url, 1)
        assert serve.wait_until_served(60, tmp_path / "serve.json") == server.url
    finally:
        server.stop()
