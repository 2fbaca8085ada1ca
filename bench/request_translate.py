"""Request translation time vs ``json.loads`` + ``json.dumps`` of the same body, same run.

    .venv/bin/python bench/request_translate.py [--profile CASE]
    .venv/bin/python bench/request_translate.py --mitmdump [--repeat 9] [--also CHECKOUT]

Cases: the largest captured Codex request, and a synthetic 200-turn history of about 2 MB
(each turn: user prompt, reasoning, a shell call, its output, an assistant answer). The
translation measured is what the addon does per request: validate the body
(``parse_request``), translate it, serialise the Chat request (``core/body.py``). Target: <= 3x
the baseline.
A third case, 2000 short turns, shows the per-item worst case (little text, many items).

The baseline and the relay run in turns, so a load that comes and goes on the machine weighs
on both alike; each figure is a median. The last column repeats the measure with Python's
cyclic garbage collector paused: the ~50 000 objects a long history validates into get
traversed by it (and find nothing to free), which is most of what remains above the CPU cost.
``--profile CASE`` runs one case's relay function under cProfile (CPU time) instead.

``--mitmdump``: the 2 MB, 200-turn request through real mitmdump processes, CPU of the proxy's
process per request (bench/peers.py's set-ups and fake upstream, the answer 20 events): plain
mitmdump passing the Chat request through as the floor, the relay (``relay_state`` memory, as
in the peers bench, and the default SQLite store), and the relay of each ``--also`` checkout
(a before/after in one run: ``git archive main | tar -x -C /tmp/main``). The set-ups take turns
within each run; the ratio is the median of the per-run ratios to pass-through. ``--profile``
with it writes a CPU profile of one relayed request, taken inside the relay's mitmdump.
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import gc
import http.client
import json
import pstats
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "addon"))
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "bench"))

from mitmrelay.core.body import json_body  # noqa: E402
from mitmrelay.core.request import parse_request, translate_request  # noqa: E402

FIXTURES = ROOT / "tests" / "fixtures" / "codex-0.169"


def largest_fixture() -> bytes:
    bodies = [json.loads(p.read_text()).get("body") for p in FIXTURES.glob("*.request.json")]
    return json.dumps(max((b for b in bodies if b), key=lambda b: len(json.dumps(b)))).encode()


def synthetic_history(turns: int = 200) -> bytes:
    base = json.loads((FIXTURES / "02-after-tool-call.request.json").read_text())["body"]
    prefix = base["input"][:3]
    items = list(prefix)
    output = "drwxr-xr-x  5 user user 4096 Nov 28 file.txt\n" * 180
    for t in range(turns):
        items += [
            {
                "type": "message",
                "role": "user",
                "content": [{"type": "input_text", "text": f"Step {t}: inspect the tree."}],
            },
            {
                "type": "reasoning",
                "id": f"rs_{t}",
                "summary": [{"type": "summary_text", "text": "I will list the files first. " * 8}],
                "content": None,
                "encrypted_content": None,
            },
            {
                "type": "function_call",
                "id": f"fc_{t}",
                "status": "completed",
                "name": "exec_command",
                "arguments": json.dumps({"cmd": f"ls -la dir{t}"}),
                "call_id": f"call_{t}",
            },
            {"type": "function_call_output", "call_id": f"call_{t}", "output": output},
            {
                "type": "message",
                "role": "assistant",
                "content": [{"type": "output_text", "text": "Listed. " * 20, "annotations": []}],
            },
        ]
    base["input"] = items
    return json.dumps(base).encode()


def many_small_items(turns: int = 2000) -> bytes:
    """The per-item worst case: short turns (the same shape as above, tiny payloads)."""
    body = json.loads(synthetic_history(turns))
    for item in body["input"]:
        if item.get("type") == "function_call_output":
            item["output"] = "ok"
        elif item.get("type") == "reasoning":
            item["summary"] = [{"type": "summary_text", "text": "ls"}]
    return json.dumps(body).encode()


def medians(fns: tuple[Callable[[bytes], None], ...], body: bytes, repeat: int) -> list[float]:
    """The median time of each function, run in turns (a, b, a, b, ...)."""
    times: list[list[float]] = [[] for _ in fns]
    for _ in range(repeat):
        for fn, out in zip(fns, times, strict=True):
            t0 = time.perf_counter()
            fn(body)
            out.append(time.perf_counter() - t0)
    return [statistics.median(t) for t in times]


def without_gc(body: bytes, repeat: int) -> list[float]:
    gc.disable()
    try:
        return medians((baseline, relay), body, repeat)
    finally:
        gc.enable()


def baseline(body: bytes) -> None:
    json.dumps(json.loads(body))


def relay(body: bytes) -> None:
    chat, _ = translate_request(parse_request(body), upstream_model="up")
    json_body(chat, len(body))  # as every attempt's body is written (core/exchange.py)


CASES: dict[str, tuple[Callable[[], bytes], int]] = {
    "largest fixture": (largest_fixture, 200),
    "200-turn history": (synthetic_history, 15),
    "2000 short turns": (many_small_items, 15),
}


def in_process() -> None:
    print(
        f"{'case':<28}{'size':>10}{'json (ms)':>12}{'relay (ms)':>12}{'ratio':>8}"
        f"{'ratio w/o GC':>14}"
    )
    for name, (make, repeat) in CASES.items():
        body = make()
        base, ours = medians((baseline, relay), body, repeat)
        base_cpu, ours_cpu = without_gc(body, repeat)
        print(
            f"{name:<28}{len(body) / 1e6:>8.2f}MB{base * 1e3:>12.2f}{ours * 1e3:>12.2f}"
            f"{ours / base:>7.2f}x{ours_cpu / base_cpu:>13.2f}x"
        )


def profile_case(name: str) -> None:
    """cProfile (CPU time) of ``relay`` on one case, after a warm-up."""
    make, repeat = CASES[name]
    body = make()
    relay(body)
    profiler = cProfile.Profile(time.process_time)
    profiler.enable()
    for _ in range(repeat):
        relay(body)
    profiler.disable()
    pstats.Stats(profiler).sort_stats("cumulative").print_stats(30)


# ---------------------------------------------------------------------- through mitmdump

# Loaded after the relay: cProfiles (CPU time) the one request that carries ``x-bench:
# profile``, from its headers to its end, and writes the profile to PROFILE_OUT.
PROBE = r"""
import cProfile, time

class Probe:
    profiler = None
    def requestheaders(self, flow):
        if flow.request.headers.get("x-bench") == "profile":
            self.profiler = cProfile.Profile(time.process_time)
            self.profiler.enable()
    def response(self, flow):
        if self.profiler is not None and flow.request.headers.get("x-bench") == "profile":
            self.profiler.disable()
            self.profiler.dump_stats({out!r})
            self.profiler = None

addons = [Probe()]
"""


def through_mitmdump(repeat: int, also: list[Path], profile: bool) -> None:
    """The 2 MB request's CPU per request in each set-up (module docstring)."""
    import peers
    from support.mitm import RELAY_SCRIPT, MitmRelay

    up = peers.PacedUpstream()
    big = peers.big_history(peers.SHORT)
    with tempfile.TemporaryDirectory() as tmp_name, contextlib.ExitStack() as running:
        tmp = Path(tmp_name)
        probe = tmp / "probe.py"
        probe.write_text(PROBE.format(out=str(tmp / "relay.prof")))

        def relay_peer(name: str, checkout: Path, state: str) -> peers.Peer:
            proxy = MitmRelay(tmp / f"{name}-conf", up.url, options={"relay_state": state})
            script = str(checkout / "addon" / "relay.py")
            proxy.args = [script if a == str(RELAY_SCRIPT) else a for a in proxy.args]
            proxy.args += ["-s", str(probe)]
            running.enter_context(proxy)
            assert proxy.proc is not None
            return peers.Peer(name, proxy.port, responses=True, pid=proxy.proc.pid)

        setups = [
            running.enter_context(peers.mitm_pass_through(up, tmp)),
            relay_peer("mitmrelay", ROOT, "memory"),
            relay_peer("mitmrelay, SQLite state", ROOT, "sqlite"),
        ]
        setups += [relay_peer(f"mitmrelay@{c.name}", c, "memory") for c in also]
        bodies = {s.name: s.body(big) for s in setups}
        for s in setups:  # imports, caches, the link's pool
            for _ in range(2):
                peers.request(s, bodies[s.name])
        for _ in range(repeat):
            for s in setups:
                peers.big_request_cpu(s, bodies[s.name])
        if profile:
            relayed = setups[1]
            conn = http.client.HTTPConnection("127.0.0.1", relayed.port, timeout=120)
            conn.request("POST", relayed.path, bodies[relayed.name], {"x-bench": "profile"})
            conn.getresponse().read()
            conn.close()
            time.sleep(peers.SETTLE_S)
            stats = pstats.Stats(str(tmp / "relay.prof"))
    floor = setups[0].results["big"]
    print(
        f"the {len(bodies[setups[1].name]) / 1e6:.2f} MB, 200-turn request through mitmdump: "
        f"CPU of the proxy's process per request, median (min-max) of {repeat} runs"
    )
    print(f"{'set-up':<34}{'ms CPU':>8}{'(min-max)':>14}{'ratio':>8}")
    for s in setups:
        cpu = s.results["big"]
        paired = statistics.median(r / b for r, b in zip(cpu, floor, strict=True))
        spread = f"({min(cpu):.1f}-{max(cpu):.1f})"
        print(f"{s.name:<34}{statistics.median(cpu):>8.1f}{spread:>14}{paired:>7.2f}x")
    if profile:
        print("\none relayed request under cProfile in mitmdump (CPU time):")
        stats.sort_stats("cumulative").print_stats(40)
        stats.sort_stats("tottime").print_stats(25)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mitmdump", action="store_true", help="the 2 MB request in mitmdump")
    parser.add_argument("--repeat", type=int, default=9, help="runs of --mitmdump")
    parser.add_argument(
        "--also",
        type=Path,
        action="append",
        default=[],
        metavar="CHECKOUT",
        help="with --mitmdump: another checkout's relay, measured in the same run",
    )
    parser.add_argument(
        "--profile",
        nargs="?",
        const="2000 short turns",
        choices=list(CASES),
        help="profile one case in this process (default: 2000 short turns); with --mitmdump, "
        "one relayed request inside mitmdump",
    )
    args = parser.parse_args()
    if args.mitmdump:
        through_mitmdump(args.repeat, args.also, args.profile is not None)
    elif args.profile:
        profile_case(args.profile)
    else:
        in_process()


if __name__ == "__main__":
    main()
