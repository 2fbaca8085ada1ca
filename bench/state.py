"""State backends with 10 000 sessions: puts and gets per second, and memory.

    .venv/bin/python bench/state.py

Each backend runs in its own process (so RSS is its own), storing 10 000 conversation records
of about 2 KB (a short Codex exchange) and reading each back once. Redis is a real
``redis-server`` on a free loopback port; its own memory is reported from ``INFO``.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from support.local_servers import start_redis  # noqa: E402

SESSIONS = 10_000

WORKER = r"""
import json, sys, time
from pathlib import Path
sys.path.insert(0, sys.argv[3])
from mitmrelay.core.bounds import Limits
from mitmrelay.state import open_store

def rss_kb():
    return int(Path("/proc/self/statm").read_text().split()[1]) * 4

url, confdir, n = sys.argv[1], Path(sys.argv[2]), int(sys.argv[4])
record = {"input": [{"type": "message", "role": "user", "content": "x" * 1500}],
          "output": [{"type": "message", "role": "assistant",
                      "content": [{"type": "output_text", "text": "y" * 400}]}]}
store = open_store(url, confdir=confdir, limits=Limits(max_entries=n))
before = rss_kb()
t0 = time.perf_counter()
for i in range(n):
    store.put(f"resp_{i}", record)
t1 = time.perf_counter()
for i in range(n):
    assert store.get(f"resp_{i}") is not None
t2 = time.perf_counter()
print(json.dumps({"put": n / (t1 - t0), "get": n / (t2 - t1), "rss_mb": (rss_kb() - before) / 1024,
                  "stats": store.stats()}))
"""


def run(url: str, confdir: str) -> dict:
    out = subprocess.run(
        [sys.executable, "-c", WORKER, url, confdir, str(ROOT / "addon"), str(SESSIONS)],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout)


def main() -> None:
    print(f"{SESSIONS} sessions of ~2 KB each")
    print(f"{'backend':<10}{'puts/s':>10}{'gets/s':>10}{'client RSS':>12}  notes")
    with tempfile.TemporaryDirectory() as tmp:
        for url in ("memory", "sqlite"):
            r = run(url, tmp)
            size = ""
            if url == "sqlite":
                db = Path(tmp) / "mitmrelay-state.sqlite3"
                size = f"db file {db.stat().st_size / 1e6:.1f} MB"
            print(f"{url:<10}{r['put']:>10.0f}{r['get']:>10.0f}{r['rss_mb']:>10.1f}MB  {size}")
        started = start_redis(tmp)
        if started is None:
            print("redis     (redis-server not installed)")
            return
        proc, url = started
        try:
            r = run(url, tmp)
            import redis

            used = redis.Redis.from_url(url).info("memory")["used_memory"] / 1e6
            print(
                f"{'redis':<10}{r['put']:>10.0f}{r['get']:>10.0f}{r['rss_mb']:>10.1f}MB  "
                f"server used_memory {used:.1f} MB"
            )
        finally:
            proc.terminate()


if __name__ == "__main__":
    main()
