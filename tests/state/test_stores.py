"""Every state backend: round trip, bounds (count, bytes, age), persistence, concurrency."""

from __future__ import annotations

import sqlite3
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from mitmrelay.core.body import LONG_STRING
from mitmrelay.core.bounds import Limits
from mitmrelay.state import SQLITE_FILE, open_store


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(params=["memory", "sqlite", "redis"])
def make_store(request, tmp_path):
    opened = []

    def make(limits=None, clock=None):
        limits = limits or Limits()
        if request.param == "redis":
            url = request.getfixturevalue("redis_url")
            if not opened:  # a fresh database per test; reopening keeps it
                import redis

                redis.Redis.from_url(url).flushdb()
        else:
            url = request.param
        store = open_store(url, confdir=tmp_path, limits=limits, clock=clock or Clock())
        opened.append(store)
        return store

    make.backend = request.param
    yield make
    for store in opened:
        store.close()


def test_round_trip(make_store):
    store = make_store()
    value = {"input": [{"type": "message", "role": "user", "content": "é"}], "output": []}
    store.put("resp_1", value)
    assert store.get("resp_1") == value
    assert store.get("resp_missing") is None


def test_count_bound_evicts_least_recently_used(make_store):
    clock = Clock()
    store = make_store(Limits(max_entries=3, max_bytes=10**6, ttl_s=100), clock)
    for i in range(3):
        clock.now += 1
        store.put(f"k{i}", {"i": i})
    clock.now += 1
    assert store.get("k0") == {"i": 0}  # k0 is now the most recently used
    clock.now += 1
    store.put("k3", {"i": 3})
    assert store.get("k1") is None and store.get("k0") == {"i": 0}
    assert store.stats()["entries"] == 3


def test_byte_bound_and_age(make_store):
    clock = Clock()
    store = make_store(Limits(max_entries=100, max_bytes=200, ttl_s=10), clock)
    for i in range(10):
        clock.now += 0.5
        store.put(f"k{i}", {"pad": "x" * 40})
    assert store.stats()["bytes"] <= 200
    assert store.get("k9") is not None
    clock.now += 11
    assert store.get("k9") is None  # older than the age bound


def test_ten_thousand_sessions_hold_the_bounds(make_store):
    store = make_store(Limits(max_entries=1000, max_bytes=500_000, ttl_s=3600))
    for i in range(10_000):
        store.put(f"resp_{i}", {"input": [{"role": "user", "content": f"turn {i}"}]})
    stats = store.stats()
    assert stats["entries"] <= 1000 and stats["bytes"] <= 500_000
    assert store.get("resp_9999") is not None and store.get("resp_0") is None


def test_concurrent_writers(make_store):
    store = make_store(Limits(max_entries=10_000))
    errors = []

    def write(n: int) -> None:
        try:
            for i in range(200):
                store.put(f"w{n}-{i}", {"n": n, "i": i})
        except Exception as e:  # the assertion below reports it
            errors.append(e)

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(write, range(8)))
    assert not errors
    assert store.stats()["entries"] == 1600
    assert store.get("w7-199") == {"n": 7, "i": 199}


def test_a_record_holding_an_image_round_trips(make_store, request):
    # Long enough that each store keeps the image string as its parts (core/body.py): SQLite
    # writes it into its row a chunk at a time, Redis appends it to a staging key and renames
    # that into place, memory keeps the string itself.
    image = "data:image/png;base64," + "QUJD" * (LONG_STRING // 2)
    value = {"input": [{"type": "message", "role": "user", "content": [{"image_url": image}]}]}
    store = make_store()
    store.put("resp_image", value)
    store.put("resp_image", value)  # a second write replaces the first
    assert store.get("resp_image") == value
    assert store.stats()["entries"] == 1
    assert store.stats()["bytes"] > len(image)
    if make_store.backend == "redis":
        import redis

        client = redis.Redis.from_url(request.getfixturevalue("redis_url"))
        assert client.keys("mitmrelay:staged:*") == []  # nothing left behind


def test_writing_a_record_that_holds_an_image_costs_no_copy_of_it(make_store):
    # Each store keeps the image string as a part of the record's JSON (core/body.py): what
    # Python allocates while writing stays a fraction of the image (json.dumps of the record
    # alone made a copy of it and more). SQLite's own pages are not Python's: its share is
    # measured through mitmdump (tests/addon/test_hostile_mitmdump.py).
    import tracemalloc

    image = "data:image/png;base64," + "QUJD" * (4 * 1024 * 1024)  # 16 MB
    value = {"input": [{"type": "message", "role": "user", "content": [{"image_url": image}]}]}
    store = make_store(Limits(max_bytes=256 * 1024 * 1024))
    tracemalloc.start()
    try:
        store.put("resp_image", value)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < len(image) / 4, f"{make_store.backend}: {peak / len(image):.2f}x the image"


def test_a_database_made_with_the_value_column_second_still_works(tmp_path):
    # The layout before ``value`` moved last: statements name their columns, so it reads and
    # writes the same (a large row then costs SQLite one copy in memory).
    db = sqlite3.connect(tmp_path / SQLITE_FILE)
    db.executescript(
        "CREATE TABLE entries (key TEXT PRIMARY KEY, value TEXT NOT NULL, size INTEGER NOT NULL,"
        " stored REAL NOT NULL, used REAL NOT NULL);"
        "INSERT INTO entries VALUES ('resp_old', '{\"v\":1}', 7, 1000000.0, 1000000.0);"
    )
    db.close()
    store = open_store("sqlite", confdir=tmp_path, limits=Limits(), clock=Clock())
    image = "QUJD" * (LONG_STRING // 2)
    store.put("resp_new", {"image": image})
    assert store.get("resp_old") == {"v": 1} and store.get("resp_new") == {"image": image}
    assert store.stats()["entries"] == 2
    store.close()


def test_persistence_across_reopen(make_store):
    make_store().put("resp_keep", {"v": 1})
    # The memory backend is lost on restart by design; the others keep what was written.
    expected = None if make_store.backend == "memory" else {"v": 1}
    assert make_store().get("resp_keep") == expected


def test_two_processes_share_sqlite(tmp_path):
    import subprocess
    import sys

    script = (
        "import sys; from pathlib import Path; from mitmrelay.state import open_store;"
        "from mitmrelay.core.bounds import Limits;"
        "s = open_store('sqlite', confdir=Path(sys.argv[1]), limits=Limits());"
        "[s.put(f'{sys.argv[2]}-{i}', {'i': i}) for i in range(300)]"
    )
    procs = [
        subprocess.Popen([sys.executable, "-c", script, str(tmp_path), name])
        for name in ("a", "b", "c")
    ]
    assert [p.wait(timeout=60) for p in procs] == [0, 0, 0]
    store = open_store("sqlite", confdir=tmp_path, limits=Limits())
    assert store.stats()["entries"] == 900
    store.close()


def test_unknown_url_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="relay_state must be"):
        open_store("postgres://x", confdir=tmp_path, limits=Limits())
    with pytest.raises(ValueError, match="cannot use Redis"):
        open_store("redis://127.0.0.1:1/0", confdir=tmp_path, limits=Limits())


def test_threads_share_one_memory_store():
    lock_free = open_store("memory", confdir=None, limits=Limits())  # type: ignore[arg-type]
    threads = [threading.Thread(target=lambda n=n: lock_free.put(f"t{n}", {})) for n in range(50)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert lock_free.stats()["entries"] == 50


def test_memory_backend_memory_stays_within_its_byte_bound():
    # 10 000 sessions of ~2 KB into a 2 MB bound: what Python holds afterwards stays a small
    # multiple of the bound (JSON text plus the index), not the 20 MB that was written.
    import tracemalloc

    limits = Limits(max_entries=100_000, max_bytes=2 * 1024 * 1024)
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    store = open_store("memory", confdir=None, limits=limits)  # type: ignore[arg-type]
    for i in range(10_000):
        store.put(f"resp_{i}", {"input": [{"role": "user", "content": "x" * 2000}]})
    held = tracemalloc.get_traced_memory()[0] - base
    tracemalloc.stop()
    assert store.stats()["bytes"] <= limits.max_bytes
    assert held < 3 * limits.max_bytes
