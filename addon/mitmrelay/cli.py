"""``mitmrelay``: run the relay under mitmdump or mitmweb, or print Codex's configuration.

    mitmrelay [--reverse-port 4444] [--proxy-port 8080] [mitmproxy options...]
    mitmrelay web [...]            the same under mitmweb, to watch every exchange
    mitmrelay codex-config [...]   the Codex config.toml block (and proxy-mode env lines)

The reverse listener serves Codex as a custom provider (no CA needed); the regular proxy serves
an unmodified Codex through HTTPS_PROXY. Extra arguments go to mitmproxy unchanged, e.g.
``--set relay_upstream=https://api.deepseek.com/v1``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from pathlib import Path

RELAY_SCRIPT = Path(__file__).resolve().parents[1] / "relay.py"
# The reverse target is never contacted: every request on that listener is answered by the
# relay (routing.py); it only has to be a syntactically valid target.
DUMMY_TARGET = "http://127.0.0.1:1"


COMMANDS = ("run", "web", "codex-config")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="mitmrelay", description=__doc__.split("\n\n")[0])
    p.add_argument("--listen-host", default="127.0.0.1")
    p.add_argument("--reverse-port", type=int, default=4444)
    p.add_argument(
        "--proxy-port",
        type=int,
        default=8080,
        help="regular proxy port for an unmodified Codex; 0 disables it",
    )
    p.add_argument(
        "--model",
        default=os.environ.get("CODEX_RELAY_MODEL", ""),
        help="codex-config: the model name Codex should send (default: gpt-5.5)",
    )
    p.add_argument("--confdir", default="~/.mitmproxy")
    return p


def mitmproxy_argv(args: argparse.Namespace, extra: list[str]) -> list[str]:
    tool = "mitmweb" if args.command == "web" else "mitmdump"
    exe = shutil.which(tool, path=str(Path(sys.executable).parent)) or tool
    argv = [
        exe,
        "-s",
        str(RELAY_SCRIPT),
        "--set",
        f"confdir={args.confdir}",
        "--mode",
        f"reverse:{DUMMY_TARGET}@{args.listen_host}:{args.reverse_port}",
    ]
    if args.proxy_port:
        argv += ["--mode", f"regular@{args.listen_host}:{args.proxy_port}"]
    if tool == "mitmweb":
        argv += ["--no-web-open-browser"]
    return argv + extra


def codex_config(args: argparse.Namespace) -> str:
    model = args.model or "gpt-5.5"
    base = f"http://{args.listen_host}:{args.reverse_port}/v1"
    ca = Path(args.confdir).expanduser() / "mitmproxy-ca-cert.pem"
    lines = [
        "# $CODEX_HOME/config.toml (default ~/.codex/config.toml): Codex as a custom provider",
        f'model = "{model}"',
        'model_provider = "mitmrelay"',
        "",
        "[model_providers.mitmrelay]",
        'name = "mitmrelay"',
        f'base_url = "{base}"',
        'env_key = "MITMRELAY_CLIENT_KEY"   # any value: the relay sends its own upstream key',
        'wire_api = "responses"',
        "",
        "# shell: export MITMRELAY_CLIENT_KEY=unused",
    ]
    if args.proxy_port:
        proxy = f"http://{args.listen_host}:{args.proxy_port}"
        lines += [
            "",
            "# Or leave Codex unmodified and send it through the proxy:",
            f"#   export HTTPS_PROXY={proxy}",
            f"#   export CODEX_CA_CERTIFICATE={ca}",
            "#   (then map its model with --set relay_model=<upstream model>)",
        ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["usage"]:  # `mitmrelay usage`: its own arguments (usage_report.py)
        from .usage_report import main as usage_main

        return usage_main(argv[1:])
    # The subcommand is taken by hand: argparse would mistake mitmproxy's own arguments
    # (``--set name=value``) for it.
    command = argv.pop(0) if argv and argv[0] in COMMANDS else "run"
    args, extra = _parser().parse_known_args(argv)
    args.command = command
    if args.command == "codex-config":
        print(codex_config(args))
        return 0
    command = mitmproxy_argv(args, extra)
    os.execv(command[0], command)
    return 1  # not reached


if __name__ == "__main__":
    sys.exit(main())
