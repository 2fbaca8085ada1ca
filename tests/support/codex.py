"""Drive the real, pinned Codex CLIs in tests, the way docs/codex-contract.md §14 verified.

Two versions, every e2e case against each:
- ``CODEX_VERSIONS`` lists the pinned releases, newest first (``scripts/setup`` installs each
  into ``.codex-cli/<version>/``). The newest is what users get; the previous pin stays so a
  Codex upgrade that breaks the relay is caught (docs/codex-contract.md §15 compared them).
- Every test marked ``e2e`` runs once per version, with no change to the test:
  ``tests/conftest.py`` parametrises it with the ``codex_version`` fixture (ids
  ``[codex-0.171.0]``, ``[codex-0.169.0]``), which makes that version *current*
  (``use_version``) for the test's duration. ``CodexHarness()`` built without ``version=``
  runs the current version, as does ``codex_bin()``; a subprocess that starts Codex itself
  (``scripts/demo``, ``scripts/screenshot``) gets it through ``MITMRELAY_CODEX_BIN``, which
  the fixture sets too. A test that needs one particular version passes ``version=``; a test
  meaningful for one version only is marked ``@pytest.mark.codex_versions("0.171.0")``.
  The version is looked up when a harness runs Codex, not when it is built, so a harness from
  a module-scoped fixture runs each test's version too.
- ``tests/conftest.py``'s ``require("codex")`` makes a missing version a skip locally and a
  failure naming it under CI.

Strategy and invariants:
- Every ``CodexHarness`` owns a fresh ``CODEX_HOME`` (its own ``config.toml``) and ``HOME``. They
  live under the repository's ``.pytest-codex/`` folder, never under ``/tmp``: with
  ``CODEX_HOME`` under ``/tmp`` Codex refuses to create its helper-binary aliases (§14).
- The environment is scrubbed: no proxy variables, CA overrides or API keys of the user leak in;
  only what the test asks for (a dummy client key, ``HTTPS_PROXY`` + ``CODEX_CA_CERTIFICATE`` in
  system-proxy mode) is set (§2.3).
- Custom-provider mode writes the provider block of §1/§14 with a short
  ``stream_idle_timeout_ms`` (failing tests stay fast) and a generated ``model_catalog_json`` whose
  entry says ``apply_patch_tool_type: "freeform"`` — without it Codex never offers apply_patch to
  a non-OpenAI slug (§1.2).
- Proxy mode leaves Codex unmodified: built-in ``openai`` provider, model ``gpt-5.5`` (which
  already has the freeform apply_patch tool), ``OPENAI_API_KEY`` alone (§2.3, §14).
- A run is ``codex exec --skip-git-repo-check --dangerously-bypass-approvals-and-sandbox --json
  --color never -C <workdir> -o <last-message-file> [-i img …] [resume --last] -- <prompt>``;
  ``--`` keeps ``-i`` from swallowing the prompt (§14). The ``--json`` stdout is parsed into
  events; the ``-o`` file holds the final assistant message.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import time
import uuid
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
# Newest first; keep in step with CODEX_VERSIONS in scripts/setup.
CODEX_VERSIONS = ("0.171.0", "0.169.0")
BIN_VAR = "MITMRELAY_CODEX_BIN"  # an explicit binary (set by the codex_version fixture)
_current: list[str] = [CODEX_VERSIONS[0]]  # the version a harness without version= runs
# The newest release's launcher, for code that needs one fixed binary (reading Codex's bundled
# catalog); scripts/setup also links it at the old single-version path .codex-cli/node_modules.
CODEX_BIN = ROOT / ".codex-cli" / CODEX_VERSIONS[0] / "node_modules" / ".bin" / "codex"
# Not /tmp (docs/codex-contract.md §14); ignored by git.
HOMES_ROOT = ROOT / ".pytest-codex"

CLIENT_KEY = "sk-codex-client-never-upstream"
KEY_VAR = "MITMRELAY_TEST_CLIENT_KEY"

# Variables that would change where Codex connects, what it trusts or which credentials it uses.
_SCRUB_PREFIXES = ("OPENAI_", "CODEX_", "AZURE_OPENAI", "ANTHROPIC_", "DEEPSEEK_")
_SCRUB_EXACT = {"SSL_CERT_FILE", "SSL_CERT_DIR", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"}


def codex_bin(version: str | None = None) -> Path:
    """The launcher of ``version`` (default: the current one, or ``$MITMRELAY_CODEX_BIN``
    when a parent process chose the binary)."""
    if version is None:
        explicit = os.environ.get(BIN_VAR)
        if explicit:
            return Path(explicit)
        version = _current[0]
    return ROOT / ".codex-cli" / version / "node_modules" / ".bin" / "codex"


def codex_available(version: str | None = None) -> bool:
    path = codex_bin(version)
    return path.exists() and os.access(path, os.X_OK)


def current_version() -> str:
    return _current[0]


@contextlib.contextmanager
def use_version(version: str) -> Iterator[Path]:
    """Make ``version`` current (for harnesses and, through ``MITMRELAY_CODEX_BIN``, for
    scripts started as subprocesses) until the block ends; yields its binary."""
    if version not in CODEX_VERSIONS:
        raise ValueError(f"Codex {version} is not pinned (pinned: {', '.join(CODEX_VERSIONS)})")
    previous, previous_bin = _current[0], os.environ.get(BIN_VAR)
    _current[0] = version
    path = codex_bin(version)
    os.environ[BIN_VAR] = str(path)
    try:
        yield path
    finally:
        _current[0] = previous
        if previous_bin is None:
            os.environ.pop(BIN_VAR, None)
        else:
            os.environ[BIN_VAR] = previous_bin


def scrubbed_env(base: dict[str, str] | None = None) -> dict[str, str]:
    """The caller's environment without proxies, CA overrides or provider keys."""
    env = dict(os.environ if base is None else base)
    for name in list(env):
        if (
            name.lower().endswith("_proxy")
            or name.upper() in _SCRUB_EXACT
            or name.upper().startswith(_SCRUB_PREFIXES)
            or name == KEY_VAR
        ):
            del env[name]
    env["NO_COLOR"] = "1"
    return env


def model_catalog(slug: str, *, context_window: int = 128000) -> dict[str, Any]:
    """A one-entry ``model_catalog_json`` (shape of the verified minimal example, §1.2)."""
    levels = [{"effort": e, "description": e} for e in ("low", "medium", "high")]
    return {
        "models": [
            {
                "slug": slug,
                "display_name": slug,
                "description": "served through mitmrelay",
                "default_reasoning_level": "medium",
                "supported_reasoning_levels": levels,
                "shell_type": "shell_command",
                "visibility": "list",
                "supported_in_api": True,
                "priority": 1,
                "upgrade": None,
                # Required (Codex 0.169 refuses an entry lacking both this and
                # model_messages.instructions_template) and it replaces the ~17 KB default
                # prompt (§1.2); proxy-mode runs (gpt-5.5) still send the full default prompt.
                "base_instructions": (
                    "You are a coding agent running in a terminal. Use the tools to act."
                ),
                "supports_reasoning_summaries": True,
                "support_verbosity": False,
                "default_verbosity": None,
                # The only way to get the freeform apply_patch tool for a custom slug (§1.2).
                "apply_patch_tool_type": "freeform",
                "truncation_policy": {"mode": "tokens", "limit": 10000},
                "supports_parallel_tool_calls": True,
                "context_window": context_window,
                "experimental_supported_tools": [],
            }
        ]
    }


@dataclass(frozen=True)
class McpServer:
    """A stdio MCP server entry for ``[mcp_servers.<name>]``."""

    name: str
    command: str
    args: Sequence[str] = ()


@dataclass
class CodexRun:
    args: list[str]
    returncode: int
    stdout: str
    stderr: str
    last_message: str
    seconds: float
    events: list[dict[str, Any]] = field(default_factory=list)

    def items(self, item_type: str | None = None) -> list[dict[str, Any]]:
        """``item`` of every ``item.completed`` event (optionally of one ``type``)."""
        out = []
        for ev in self.events:
            item = ev.get("item")
            if (
                ev.get("type") == "item.completed"
                and isinstance(item, dict)
                and (item_type is None or item.get("type") == item_type)
            ):
                out.append(item)
        return out

    def errors(self) -> list[str]:
        msgs = []
        for ev in self.events:
            if ev.get("type") == "error":
                msgs.append(str(ev.get("message", "")))
            elif ev.get("type") == "turn.failed":
                msgs.append(str((ev.get("error") or {}).get("message", "")))
        return msgs

    def describe(self) -> str:
        return (
            f"codex exited {self.returncode} after {self.seconds:.1f}s\n"
            f"args: {self.args}\nlast message: {self.last_message!r}\n"
            f"stdout:\n{self.stdout[-6000:]}\nstderr:\n{self.stderr[-4000:]}"
        )


class CodexHarness:
    """One Codex "installation": a CODEX_HOME, a HOME, a work dir, and how to reach the model.

    ``base_url`` set: custom provider ``relay`` at that URL (``model`` is the slug Codex sends).
    ``proxy`` set instead: unmodified Codex, built-in provider, through ``HTTPS_PROXY`` trusting
    ``ca`` via ``ca_var`` (``CODEX_CA_CERTIFICATE`` by default, or ``SSL_CERT_FILE``).
    ``version``: the Codex release to run (default: the current one, module docstring).
    """

    def __init__(
        self,
        *,
        base_url: str | None = None,
        proxy: str | None = None,
        ca: Path | None = None,
        ca_var: str = "CODEX_CA_CERTIFICATE",
        model: str | None = None,
        workdir: Path | None = None,
        mcp_servers: Iterable[McpServer] = (),
        idle_timeout_ms: int = 20000,
        stream_max_retries: int | None = None,
        extra_config: str = "",
        config_text: str | None = None,
        extra_env: dict[str, str] | None = None,
        label: str = "codex",
        version: str | None = None,
    ) -> None:
        if (base_url is None) == (proxy is None) and config_text is None:
            raise ValueError("give exactly one of base_url (custom provider) or proxy")
        self._version = version  # None: the current version at each run (module docstring)
        self.base = HOMES_ROOT / f"{label}-{uuid.uuid4().hex[:10]}"
        self.home = self.base / "home"
        self.codex_home = self.base / "codex-home"
        self.workdir = workdir or (self.base / "work")
        for d in (self.home, self.codex_home, self.workdir):
            d.mkdir(parents=True, exist_ok=True)
        self.proxy, self.ca, self.ca_var = proxy, ca, ca_var
        self.model = model or ("gpt-5.5" if proxy else "deepseek-chat")
        self.runs: list[CodexRun] = []
        self.extra_env = dict(extra_env or {})
        self._config = (list(mcp_servers), idle_timeout_ms, stream_max_retries, extra_config)
        if config_text is not None:
            # A config written by someone else (e.g. `mitmrelay codex-config`), used verbatim.
            (self.codex_home / "config.toml").write_text(config_text)
        else:
            self._write_config(base_url, *self._config)

    @property
    def version(self) -> str:
        return self._version or current_version()

    @property
    def binary(self) -> Path:
        return codex_bin(self._version)

    def point_at(self, base_url: str) -> None:
        """Re-target the custom provider (a restarted relay listens on a new port 0)."""
        self._write_config(base_url, *self._config)

    # ------------------------------------------------------------------ setup

    def _write_config(
        self,
        base_url: str | None,
        mcp_servers: list[McpServer],
        idle_timeout_ms: int,
        stream_max_retries: int | None,
        extra_config: str,
    ) -> None:
        lines = [f"model = {json.dumps(self.model)}"]
        if base_url is not None:
            catalog = self.codex_home / "model-catalog.json"
            catalog.write_text(json.dumps(model_catalog(self.model), indent=1))
            lines += [
                'model_provider = "relay"',
                f"model_catalog_json = {json.dumps(str(catalog))}",
            ]
        lines.append(extra_config)
        if base_url is not None:
            lines += [
                "",
                "[model_providers.relay]",
                'name = "mitmrelay"',
                f"base_url = {json.dumps(base_url)}",
                f'env_key = "{KEY_VAR}"',
                'wire_api = "responses"',
                f"stream_idle_timeout_ms = {idle_timeout_ms}",
            ]
            if stream_max_retries is not None:
                lines.append(f"stream_max_retries = {stream_max_retries}")
        for srv in mcp_servers:
            lines += [
                "",
                f"[mcp_servers.{srv.name}]",
                f"command = {json.dumps(srv.command)}",
                f"args = {json.dumps(list(srv.args))}",
            ]
        (self.codex_home / "config.toml").write_text("\n".join(lines) + "\n")

    def env(self) -> dict[str, str]:
        env = scrubbed_env()
        env.update(HOME=str(self.home), CODEX_HOME=str(self.codex_home))
        if self.proxy is None:
            env[KEY_VAR] = CLIENT_KEY
        else:
            # Unmodified Codex: the API key alone suffices for `codex exec` (§2.3).
            env["OPENAI_API_KEY"] = CLIENT_KEY
            env["HTTPS_PROXY"] = self.proxy
            if self.ca is not None:
                # CODEX_CA_CERTIFICATE or SSL_CERT_FILE: both verified (§2.3).
                env[self.ca_var] = str(self.ca)
        env.update(self.extra_env)
        return env

    # ------------------------------------------------------------------ running

    def exec(
        self,
        prompt: str,
        *,
        images: Sequence[Path] = (),
        resume_last: bool = False,
        timeout: float = 120,
        options: Sequence[str] = (),
    ) -> CodexRun:
        """``options``: more ``codex exec`` options, e.g. ``["-m", "kimi-k2"]``."""
        out_file = self.base / f"last-message-{len(self.runs)}.txt"
        args = [
            str(self.binary),
            "exec",
            "--skip-git-repo-check",
            "--dangerously-bypass-approvals-and-sandbox",
            "--json",
            "--color",
            "never",
            "-C",
            str(self.workdir),
            "-o",
            str(out_file),
        ]
        args += list(options)
        for img in images:
            args += ["-i", str(img)]
        if resume_last:
            args += ["resume", "--last"]
        args += ["--", prompt]
        started = time.monotonic()
        # The npm launcher (node) starts the Rust binary, which starts shells and MCP servers:
        # run it in its own process group so a timeout ends all of them, not just the launcher.
        proc = subprocess.Popen(
            args,
            env=self.env(),
            cwd=self.workdir,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        try:
            stdout, stderr = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            stdout, stderr = proc.communicate()
            stderr += f"\n[harness] codex killed after {timeout}s timeout"
        seconds = time.monotonic() - started
        events = []
        for line in stdout.splitlines():
            line = line.strip()
            if line.startswith("{"):
                with contextlib.suppress(ValueError):  # Codex may print non-JSON notices
                    events.append(json.loads(line))
        last = out_file.read_text() if out_file.exists() else ""
        run = CodexRun(args, proc.returncode, stdout, stderr, last, seconds, events)
        self.runs.append(run)
        return run

    def cleanup(self) -> None:
        shutil.rmtree(self.base, ignore_errors=True)
