"""A relay whose configuration failed relays nothing and forwards nothing.

mitmproxy parses an ``int`` or ``bool`` option's ``--set`` value itself, after the script has
declared it; when that parse fails the script is never registered, so none of its hooks run and
Codex's request, its ``Authorization`` header included, went on to the original target. The
relay's number options are therefore strings parsed by config.py, values mitmproxy could not
parse (no value, given twice) are taken out before it tries, and while the configuration has
not succeeded every flow the relay would relay is answered locally with a 503
``relay_not_configured`` (docs/mitmproxy-notes.md §4, §7).

Real mitmdump. The original target is a server that counts connections; so is the upstream.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import httpx
import pytest
from support.fake_upstream import FakeUpstream
from support.mitm import MitmRelay

pytestmark = pytest.mark.integration

HOLD = Path(__file__).resolve().parents[1] / "support" / "hold_running.py"
CLIENT_KEY = "sk-client-0123456789abcdef"
CODEX_REQUEST = {"model": "gpt-5.5", "input": "hi", "stream": True}

# (extra mitmdump arguments, what the one error line says)
MALFORMED = {
    "seconds": (["--set", "relay_timeout=abc"], "relay_timeout must be a positive number"),
    "count": (["--set", "relay_history_entries=1.5"], "relay_history_entries must be a positive"),
    "deadline": (["--set", "relay_state_deadline_ms=soon"], "relay_state_deadline_ms must be"),
    "usage-days": (["--set", "relay_usage_days=1.5"], "relay_usage_days must be 0"),
    "metrics-port": (["--set", "relay_metrics_port=x"], "relay_metrics_port must be 0-65535"),
    "no-value": (["--set", "relay_keepalive"], "relay_keepalive needs a value"),
    "twice": (["--set", "relay_timeout=5", "--set", "relay_timeout=6"], "relay_timeout is set 2"),
}


def relay_args(relay: MitmRelay, extra: list[str], *scripts: Path) -> None:
    at = relay.args.index("-s")
    for script in scripts:
        relay.args[at:at] = ["-s", str(script)]
    relay.args += extra


@pytest.mark.parametrize("case", MALFORMED)
def test_a_malformed_option_answers_locally_and_forwards_nothing(case, tmp_path):
    extra, message = MALFORMED[case]
    release = tmp_path / "release"
    with FakeUpstream() as origin, FakeUpstream() as upstream:
        relay = MitmRelay(
            tmp_path / "conf",
            upstream.url,
            mode=f"reverse:http://127.0.0.1:{origin.port}",
            env={"MITMRELAY_TEST_RELEASE": str(release)},
        )
        relay_args(relay, extra, HOLD)
        with relay:
            answer = httpx.post(
                f"{relay.url}/v1/responses",
                json=CODEX_REQUEST,
                headers={"authorization": f"Bearer {CLIENT_KEY}"},
                timeout=30,
            )
            release.touch()
            assert relay.proc is not None
            code = relay.proc.wait(timeout=30)
        assert answer.status_code == 503
        error = json.loads(answer.content)["error"]
        assert error["code"] == "relay_not_configured"
        assert message in error["message"]
        assert code == 1  # and mitmdump stopped
        assert (origin.connections, upstream.connections) == (0, 0)
    log = relay.text()
    assert CLIENT_KEY not in log
    assert "Traceback" not in log
    assert [line for line in relay.log if message in line] == [
        next(line for line in relay.log if "mitmrelay: " in line and message in line)
    ]


def test_as_users_run_it_mitmdump_stops_with_one_line_and_the_target_sees_nothing(tmp_path):
    """No test script: mitmdump as a user starts it with a malformed option."""
    with FakeUpstream() as origin, FakeUpstream() as upstream:
        relay = MitmRelay(
            tmp_path / "conf", upstream.url, mode=f"reverse:http://127.0.0.1:{origin.port}"
        )
        relay_args(relay, ["--set", "relay_timeout=1.5s"])
        out = subprocess.run(
            relay.args,
            env=relay.env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert out.returncode == 1
        assert (origin.connections, upstream.connections) == (0, 0)
    text = out.stdout + out.stderr
    assert "Traceback" not in text
    (line,) = [line for line in text.splitlines() if "relay_timeout" in line]
    assert line.endswith(
        "mitmrelay: relay_timeout must be a positive number of seconds, got '1.5s'"
    )
