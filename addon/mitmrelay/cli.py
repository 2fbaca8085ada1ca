"""``mitmrelay``: run the relay under mitmdump or mitmweb, or print Codex's configuration.

    mitmrelay [--routes FILE] [--reverse-port 4444] [--proxy-port 8080] [mitmproxy options...]
    mitmrelay web [...]            the same under mitmweb, to watch every exchange
    mitmrelay codex-config [...]   the Codex config.toml block (and proxy-mode env lines)
    mitmrelay codex-config --routes FILE --catalog PATH
                                   ... and Codex's model catalog for the routed names

The reverse listener serves Codex as a custom provider (no CA needed); the regular proxy serves
an unmodified Codex through HTTPS_PROXY. Extra arguments go to mitmproxy unchanged, e.g.
``--set relay_upstream=https://api.deepseek.com/v1``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from .core.catalog import CatalogError, build_catalog
from .core.routes import RoutesError, RouteTable, parse_routes

ROOT = Path(__file__).resolve().parents[2]
RELAY_SCRIPT = Path(__file__).resolve().parents[1] / "relay.py"
# The reverse target is never contacted: every request on that listener is answered by the
# relay (routing.py); it only has to be a syntactically valid target.
DUMMY_TARGET = "http://127.0.0.1:1"
# The Codex CLI scripts/setup installs, when none is on PATH.
PINNED_CODEX = ROOT / ".codex-cli" / "node_modules" / ".bin" / "codex"


COMMANDS = ("run", "web", "codex-config")


class CliError(Exception):
    """A one-line problem with the command's input; printed without a traceback."""


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
        "--routes",
        default="",
        help="routes file (providers, model names, fallbacks): run passes it as relay_routes; "
        "codex-config reads its model names",
    )
    p.add_argument(
        "--catalog",
        default="",
        help="codex-config: write Codex's model catalog for the routed names to this path",
    )
    p.add_argument(
        "--codex",
        default="",
        help="codex-config --catalog: the Codex CLI whose bundled catalog the entries are built "
        "on (default: codex on PATH, else the one scripts/setup installs)",
    )
    p.add_argument(
        "--model",
        default=os.environ.get("CODEX_RELAY_MODEL", ""),
        help="codex-config: the model name Codex should send (default: the routes file's "
        "default_model or first model, else gpt-5.5)",
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
    if args.routes:
        argv += ["--set", f"relay_routes={Path(args.routes).expanduser().resolve()}"]
    if tool == "mitmweb":
        argv += ["--no-web-open-browser"]
    return argv + extra


def codex_config(
    args: argparse.Namespace, table: RouteTable | None = None, catalog: Path | None = None
) -> str:
    """The ``config.toml`` block for Codex as a custom provider of this relay (and how to use
    the proxy instead). With a routes ``table``, the model is its default (or first) model;
    with a ``catalog`` path, Codex reads the routed models' metadata from it."""
    model = args.model or _default_model(table) or "gpt-5.5"
    base = f"http://{args.listen_host}:{args.reverse_port}/v1"
    ca = Path(args.confdir).expanduser() / "mitmproxy-ca-cert.pem"
    lines = [
        "# $CODEX_HOME/config.toml (default ~/.codex/config.toml): Codex as a custom provider",
        f"model = {json.dumps(model)}",
        'model_provider = "mitmrelay"',
    ]
    if catalog is not None:
        lines += [
            "# The routed models' context windows, image support, reasoning levels and the",
            "# freeform apply_patch tool, written by mitmrelay codex-config --catalog:",
            f"model_catalog_json = {json.dumps(str(catalog))}",
        ]
    lines += [
        "",
        "[model_providers.mitmrelay]",
        'name = "mitmrelay"',
        f'base_url = "{base}"',
        'env_key = "MITMRELAY_CLIENT_KEY"   # the upstream gets the relay\'s own key, never this',
        'wire_api = "responses"',
        "",
        "# shell: export MITMRELAY_CLIENT_KEY=unused   (or your client key, when the relay sets",
        "#        relay_client_keys_env: README, Exposing the relay to a team)",
    ]
    if table is not None:
        lines.append(f"# models: {', '.join(table.names())} (codex -m NAME or /model)")
    if args.proxy_port:
        proxy = f"http://{args.listen_host}:{args.proxy_port}"
        lines += [
            "",
            "# Or leave Codex unmodified and send it through the proxy:",
            f"#   export HTTPS_PROXY={proxy}",
            f"#   export CODEX_CA_CERTIFICATE={ca}",
        ]
        if table is not None:
            lines.append(
                "#   (it sends gpt-5.5 and friends: route them with default_model or a glob)"
            )
        else:
            lines.append("#   (then map its model with --set relay_model=<upstream model>)")
    return "\n".join(lines)


def _default_model(table: RouteTable | None) -> str | None:
    if table is None:
        return None
    if table.default_model is not None:
        return table.default_model
    names = table.exact_names()
    return names[0] if names else None


def read_routes(path: str) -> RouteTable:
    """The routes file's table for tools that only need its names (no keys required)."""
    try:
        text = Path(path).expanduser().read_bytes()
    except OSError as e:
        raise CliError(f"{path}: cannot be read ({e.strerror or e})") from e
    try:
        return parse_routes(text, source=path, env=os.environ, require_keys=False)
    except RoutesError as e:
        raise CliError(str(e)) from e


def find_codex(explicit: str) -> str:
    if explicit:
        return explicit
    on_path = shutil.which("codex")
    if on_path:
        return on_path
    if PINNED_CODEX.exists():
        return str(PINNED_CODEX)
    raise CliError(
        "the Codex CLI is needed to read its bundled model catalog (codex debug models "
        "--bundled): install it or pass --codex PATH"
    )


def bundled_catalog(codex: str) -> dict[str, Any]:
    """The model catalog the Codex CLI at ``codex`` ships, as it prints it."""
    try:
        done = subprocess.run(
            [codex, "debug", "models", "--bundled"],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as e:
        raise CliError(f"could not run {codex} debug models --bundled: {e}") from e
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no message"])[-1]
        raise CliError(f"{codex} debug models --bundled failed ({done.returncode}): {last}")
    try:
        catalog = json.loads(done.stdout)
    except ValueError as e:
        raise CliError(f"{codex} debug models --bundled printed no JSON catalog") from e
    if not isinstance(catalog, dict):
        raise CliError(f"{codex} debug models --bundled printed no JSON catalog")
    return catalog


def write_catalog(args: argparse.Namespace, table: RouteTable) -> Path:
    """Build Codex's catalog for ``table`` on the bundled one and write it to
    ``args.catalog``; returns the absolute path (what ``model_catalog_json`` needs)."""
    path = Path(args.catalog).expanduser().resolve()
    try:
        catalog = build_catalog(bundled_catalog(find_codex(args.codex)), table)
    except CatalogError as e:
        raise CliError(str(e)) from e
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(catalog, indent=1, ensure_ascii=False) + "\n")
    except OSError as e:
        raise CliError(f"{path}: cannot be written ({e.strerror or e})") from e
    return path


def run_codex_config(args: argparse.Namespace) -> int:
    if args.catalog and not args.routes:
        raise CliError("--catalog needs --routes FILE (the catalog lists the routed models)")
    table = read_routes(args.routes) if args.routes else None
    catalog = write_catalog(args, table) if table is not None and args.catalog else None
    print(codex_config(args, table, catalog))
    return 0


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
        try:
            return run_codex_config(args)
        except CliError as e:
            print(f"mitmrelay codex-config: {e}", file=sys.stderr)
            return 2
    command = mitmproxy_argv(args, extra)
    os.execv(command[0], command)
    return 1  # not reached


if __name__ == "__main__":
    sys.exit(main())
