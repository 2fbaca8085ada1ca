"""Usage, cost and health through a real ``mitmdump -s addon/relay.py``: the ledger's records
after text, tool, failed and cut exchanges, ``mitmrelay usage`` checked against the requests
made, the metrics endpoint scraped over HTTP and parsed with prometheus_client's own parser,
``/healthz``, a Redis ledger on a real redis-server, and a Redis that stops under the relay."""

from __future__ import annotations

import json
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import openai
import pytest
from prometheus_client.parser import text_string_to_metric_families
from support.fake_upstream import FakeUpstream, Reply, error, text, tool_call
from support.local_servers import start_redis
from support.mitm import MITMDUMP, RELAY_SCRIPT, MitmRelay

from mitmrelay.state.ledger import open_ledger

pytestmark = pytest.mark.integration

MITMRELAY = Path(sys.executable).with_name("mitmrelay")
METRICS_URL = re.compile(r"metrics (http://127\.0\.0\.1:\d+)/metrics and /healthz")
USAGE = {
    "prompt_tokens": 1200,
    "completion_tokens": 300,
    "total_tokens": 1500,
    "prompt_tokens_details": {"cached_tokens": 1000},
    "completion_tokens_details": {"reasoning_tokens": 120},
}
PROVIDER = "127.0.0.1"  # one upstream: its provider is named after its host


def metrics_url(relay: MitmRelay) -> str:
    """The endpoint the start line names (it may follow the listening line by a moment)."""
    deadline = time.monotonic() + 30
    while not (found := METRICS_URL.search(relay.text())):
        assert time.monotonic() < deadline, relay.text()
        time.sleep(0.05)
    return found.group(1)


def scrape(base: str) -> dict[tuple[str, frozenset], float]:
    r = httpx.get(f"{base}/metrics", timeout=10)
    assert r.status_code == 200
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(r.text)
        for s in family.samples
    }


def total(samples: dict, name: str, **labels: str) -> float:
    """The sum of ``name`` over every sample whose labels include ``labels``."""
    want = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and want <= ls)


def records(confdir: Path, state: str = "sqlite") -> list[dict]:
    store = open_ledger(state, confdir=confdir, read_only=True)
    try:
        return store.records(0, time.time() + 86400)
    finally:
        store.close()


def usage_report(confdir: Path, *args: str) -> dict:
    done = subprocess.run(
        [str(MITMRELAY), "usage", "--confdir", str(confdir), "--since", "2d", "--json", *args],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def post(relay: MitmRelay, **body) -> httpx.Response:
    return httpx.post(
        f"{relay.url}/v1/responses", json={"input": "x", "stream": True, **body}, timeout=30
    )


def test_ledger_report_metrics_and_health_after_real_exchanges(tmp_path):
    confdir = tmp_path / "conf"
    with (
        FakeUpstream(key="sk-relay") as up,
        MitmRelay(confdir, up.url, options={"relay_metrics_port": "0"}) as relay,
    ):
        base = metrics_url(relay)
        assert httpx.get(f"{base}/healthz", timeout=10).json()["providers"] == {
            PROVIDER: {
                "reachable": None,
                "last_attempt_s_ago": None,
                "last_status": None,
                "last_failure": None,
            }
        }
        client = openai.OpenAI(api_key="k", base_url=f"{relay.url}/v1", max_retries=0)
        # 1. a streamed text answer
        up.enqueue(Reply(chunks=[{"content": "Hello"}], usage=USAGE))
        with client.responses.stream(model="deepseek-chat", input="hi") as stream:
            assert stream.get_final_response().output_text == "Hello"
        # 2. a tool call, not streamed
        up.enqueue(Reply(**{**vars(tool_call("exec_command", {"cmd": "ls"})), "usage": USAGE}))
        called = client.responses.create(model="deepseek-reasoner", input="list")
        assert called.output[0].type == "function_call"
        # 3. an upstream error before the stream
        up.enqueue(error(500, "upstream exploded"))
        assert post(relay, model="deepseek-chat").status_code == 500
        health = httpx.get(f"{base}/healthz", timeout=10)
        assert health.status_code == 503 and health.json()["unreachable"] == [PROVIDER]
        # 4. a stream cut midway: the provider answered, the exchange failed
        up.enqueue(Reply(chunks=[{"content": "half"}], cut=True))
        assert post(relay, model="deepseek-chat").text.count("event: response.failed") == 1
        health = httpx.get(f"{base}/healthz", timeout=10)
        assert health.status_code == 200
        assert health.json()["providers"][PROVIDER]["last_failure"] == "server_error"

        got = scrape(base)
        assert total(got, "mitmrelay_requests_total") == 4
        assert total(got, "mitmrelay_requests_total", status="completed") == 2
        assert total(got, "mitmrelay_requests_total", status="http 500") == 1
        assert total(got, "mitmrelay_requests_total", status="failed", failure="server_error") == 1
        assert total(got, "mitmrelay_requests_total", model="deepseek-chat") == 3
        assert total(got, "mitmrelay_tokens_total", kind="input") == 2400
        assert total(got, "mitmrelay_tokens_total", kind="cached_input") == 2000
        assert total(got, "mitmrelay_tokens_total", kind="output") == 600
        assert total(got, "mitmrelay_tokens_total", kind="reasoning") == 240
        assert total(got, "mitmrelay_upstream_failures_total", provider=PROVIDER) == 2
        assert total(got, "mitmrelay_exchange_seconds_count") == 4
        assert total(got, "mitmrelay_first_event_seconds_count") == 4
        assert got[("mitmrelay_active_streams", frozenset())] == 0
        assert total(got, "mitmrelay_store_errors_total") == 0
        assert total(got, "mitmrelay_cost_total") == 0  # no prices without a routes file
    assert relay.proc.returncode == 0
    assert "usage ledger store failed" not in relay.text()

    rows = records(confdir)  # the relay stopped: its writer flushed on the way out
    assert [(r["upstream_model"], r["status"], r["failure"], r["stream"]) for r in rows] == [
        ("deepseek-chat", "completed", None, True),
        ("deepseek-reasoner", "completed", None, False),
        ("deepseek-chat", "http 500", "server_error", True),
        ("deepseek-chat", "failed", "server_error", True),
    ]
    assert all(r["provider"] == PROVIDER for r in rows)
    assert [(r["input_tokens"], r["cached_tokens"], r["output_tokens"], r["reasoning_tokens"])
            for r in rows[:2]] == [(1200, 1000, 300, 120)] * 2  # fmt: skip
    assert rows[2]["input_tokens"] is None and rows[2]["cost"] is None
    assert rows[2]["attempt_failures"] == [[PROVIDER, "deepseek-chat", "server_error"]]
    assert all(0 < r["first_event_s"] <= r["total_s"] for r in rows)
    assert len({r["response_id"] for r in rows}) == 4

    report = usage_report(confdir)
    by_model = {r["model"]: r for r in report["rows"]}
    assert by_model["deepseek-chat"]["requests"] == 3 and by_model["deepseek-chat"]["failed"] == 2
    assert by_model["deepseek-reasoner"]["requests"] == 1
    assert report["total"]["input_tokens"] == 2400 and report["total"]["cost"] is None
    assert report["upstream_failures"] == [
        {"provider": PROVIDER, "model": "deepseek-chat", "cause": "server_error", "count": 2}
    ]
    clients = usage_report(confdir, "--by", "client")["rows"]
    assert {r["client_model"]: r["requests"] for r in clients} == {
        "deepseek-chat": 3,
        "deepseek-reasoner": 1,
    }


def test_an_unreachable_upstream_makes_healthz_503(tmp_path):
    with MitmRelay(tmp_path, "http://127.0.0.1:1/v1", options={"relay_metrics_port": "0"}) as r:
        assert post(r, model="m").status_code == 502
        health = httpx.get(f"{metrics_url(r)}/healthz", timeout=10)
    assert health.status_code == 503
    doc = health.json()
    assert doc["status"] == "failing" and doc["configured"] is True
    assert doc["providers"][PROVIDER]["last_status"] is None


def test_a_taken_metrics_port_stops_the_relay_with_one_line(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc = subprocess.run(
            [
                str(MITMDUMP),
                "--mode",
                "reverse:http://127.0.0.1:1@127.0.0.1:0",
                "--set",
                f"confdir={tmp_path}",
                "-s",
                str(RELAY_SCRIPT),
                "--set",
                "relay_upstream=http://127.0.0.1:1/v1",
                "--set",
                f"relay_metrics_port={port}",
            ],
            capture_output=True,
            text=True,
            timeout=60,
            env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)},
        )
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert f"relay_metrics_port: cannot listen on 127.0.0.1:{port}" in out
    assert "Traceback" not in out


def test_redis_ledger_read_by_the_report(tmp_path, redis_url):
    import redis

    redis.Redis.from_url(redis_url).flushdb()
    with (
        FakeUpstream() as up,
        MitmRelay(tmp_path, up.url, options={"relay_state": redis_url}) as relay,
    ):
        for _ in range(3):
            up.enqueue(Reply(chunks=[{"content": "ok"}], usage=USAGE))
            assert post(relay, model="kimi-k2").status_code == 200
    rows = records(tmp_path, redis_url)
    assert [r["status"] for r in rows] == ["completed"] * 3
    assert not (tmp_path / "mitmrelay-state.sqlite3").exists()
    report = usage_report(tmp_path, "--state", redis_url, "--by", "day")
    assert report["total"]["requests"] == 3 and report["total"]["output_tokens"] == 900


@pytest.mark.requires("redis-server")
def test_a_stopped_redis_loses_records_never_answers(tmp_path):
    (tmp_path / "redis").mkdir()
    started = start_redis(tmp_path / "redis")
    assert started is not None  # required above
    proc, url = started
    try:
        with (
            FakeUpstream() as up,
            MitmRelay(
                tmp_path / "conf", up.url, options={"relay_state": url, "relay_metrics_port": "0"}
            ) as relay,
        ):
            up.enqueue(text("before"))
            assert post(relay, model="m").status_code == 200
            proc.terminate()
            proc.wait(timeout=10)
            for _ in range(3):
                up.enqueue(text("still answered"))
                r = post(relay, model="m")
                assert r.status_code == 200 and "still answered" in r.text
            base = metrics_url(relay)
            deadline = time.monotonic() + 30
            while total(scrape(base), "mitmrelay_store_errors_total", store="ledger") < 1:
                assert time.monotonic() < deadline, relay.text()
                time.sleep(0.1)
            assert total(scrape(base), "mitmrelay_requests_total", status="completed") == 4
    finally:
        if proc.poll() is None:
            proc.terminate()
            proc.wait(timeout=10)
    lines = relay.text().splitlines()
    said = [i for i, line in enumerate(lines) if "usage ledger store failed" in line]
    assert len(said) == 1  # once a minute at most
    assert "answers are not affected" in lines[said[0]]
    assert "Traceback" not in lines[said[0] + 1]  # one line (the conversation store's is not ours)


ROUTES = """
[providers.primary]
base_url = "{url}"
api_key_env = "CODEX_RELAY_API_KEY"

[providers.backup]
base_url = "{url}"
api_key_env = "CODEX_RELAY_API_KEY"

[models."coder"]
provider = "primary"
upstream_model = "big-coder"
fallbacks = ["coder-backup"]
price_input = 2.0
price_cached_input = 0.5
price_output = 8.0

[models."coder-backup"]
provider = "backup"
upstream_model = "small-coder"
price_input = 1.0
price_output = 4.0
"""


def test_prices_from_the_routes_file_cost_each_exchange(tmp_path):
    with FakeUpstream() as up:
        routes = tmp_path / "routes.toml"
        routes.write_text(ROUTES.format(url=up.url))
        with MitmRelay(tmp_path / "conf", up.url, options={"relay_routes": str(routes)}) as relay:
            for model in ("coder", "coder-backup"):
                up.enqueue(Reply(chunks=[{"content": "ok"}], usage=USAGE))
                assert post(relay, model=model).status_code == 200
    big = (200 * 2.0 + 1000 * 0.5 + 300 * 8.0) / 1e6
    small = (1200 * 1.0 + 300 * 4.0) / 1e6  # no cached price: cached input at the input price
    rows = records(tmp_path / "conf")
    assert [(r["provider"], r["upstream_model"]) for r in rows] == [
        ("primary", "big-coder"),
        ("backup", "small-coder"),
    ]
    assert rows[0]["cost"] == pytest.approx(big) and rows[1]["cost"] == pytest.approx(small)
    report = usage_report(tmp_path / "conf", "--by", "provider")
    assert {r["provider"]: r["cost"] for r in report["rows"]} == pytest.approx(
        {"primary": big, "backup": small}
    )
    assert report["total"]["cost"] == pytest.approx(big + small)


def test_a_fallback_is_recorded_with_the_provider_that_served(tmp_path):
    with FakeUpstream() as up:
        routes = tmp_path / "routes.toml"
        routes.write_text(ROUTES.format(url=up.url))
        with MitmRelay(
            tmp_path / "conf",
            up.url,
            options={"relay_routes": str(routes), "relay_metrics_port": "0"},
        ) as relay:
            up.enqueue(error(503, "overloaded"), Reply(chunks=[{"content": "small"}], usage=USAGE))
            assert "small" in post(relay, model="coder").text
            got = scrape(metrics_url(relay))
            assert total(got, "mitmrelay_fallbacks_total", provider="backup") == 1
            assert total(got, "mitmrelay_upstream_failures_total", provider="primary") == 1
    (row,) = records(tmp_path / "conf")
    assert (row["provider"], row["upstream_model"], row["fallbacks"]) == (
        "backup",
        "small-coder",
        1,
    )
    assert row["attempt_failures"] == [["primary", "big-coder", "server_error"]]
    assert row["cost"] == pytest.approx((1200 * 1.0 + 300 * 4.0) / 1e6)
    report = usage_report(tmp_path / "conf", "--by", "provider")
    assert {r["provider"]: r["fallbacks"] for r in report["rows"]} == {"backup": 1}
    assert report["upstream_failures"] == [
        {"provider": "primary", "model": "big-coder", "cause": "server_error", "count": 1}
    ]
