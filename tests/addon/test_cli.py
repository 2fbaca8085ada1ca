import json
import tomllib
from pathlib import Path

import pytest
from support.codex import CODEX_BIN

from mitmrelay.cli import codex_config, main, mitmproxy_argv

ROUTES = """
default_model = "deepseek-chat"

[providers.deepseek]
base_url = "https://api.deepseek.com/v1"
api_key_env = "CLI_TEST_UNSET_KEY"

[models."deepseek-chat"]
provider = "deepseek"
context_window = 65536
vision = false

[models."qwen/*"]
provider = "deepseek"
"""


def parse(argv):
    from mitmrelay.cli import _parser

    args, extra = _parser().parse_known_args(argv)
    args.command = "run"
    return args, extra


def test_run_builds_both_listeners_and_passes_mitmproxy_options_through():
    args, extra = parse(["--reverse-port", "5555", "--set", "relay_upstream=http://x/v1"])
    argv = mitmproxy_argv(args, extra)
    assert argv[0].endswith("mitmdump")
    assert "reverse:http://127.0.0.1:1@127.0.0.1:5555" in argv
    assert "regular@127.0.0.1:8080" in argv
    assert argv[-2:] == ["--set", "relay_upstream=http://x/v1"]


def test_run_passes_the_routes_file_as_an_absolute_path(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    args, extra = parse(["--routes", "routes.toml"])
    argv = mitmproxy_argv(args, extra)
    assert argv[argv.index(f"relay_routes={tmp_path / 'routes.toml'}") - 1] == "--set"


def test_codex_config_is_valid_toml_for_a_custom_provider(capsys):
    assert main(["codex-config", "--model", "deepseek-chat"]) == 0
    config = tomllib.loads(capsys.readouterr().out)
    provider = config["model_providers"]["mitmrelay"]
    assert config["model"] == "deepseek-chat" and config["model_provider"] == "mitmrelay"
    assert provider["base_url"] == "http://127.0.0.1:4444/v1"
    assert provider["wire_api"] == "responses"
    assert "model_catalog_json" not in config


def test_codex_config_mentions_proxy_mode():
    args, _ = parse([])
    assert "HTTPS_PROXY=http://127.0.0.1:8080" in codex_config(args)
    assert "CODEX_CA_CERTIFICATE=" in codex_config(args)


@pytest.mark.requires("codex")
def test_codex_config_writes_the_catalog_from_codexs_own_bundled_one(tmp_path, capsys):
    routes = tmp_path / "routes.toml"
    routes.write_text(ROUTES)
    catalog_path = tmp_path / "out" / "catalog.json"
    code = main(
        [
            "codex-config",
            "--routes",
            str(routes),
            "--catalog",
            str(catalog_path),
            "--codex",
            str(CODEX_BIN),
        ]
    )
    assert code == 0
    config = tomllib.loads(capsys.readouterr().out)
    assert config["model"] == "deepseek-chat"  # the routes file's default_model
    assert config["model_catalog_json"] == str(catalog_path)
    (entry,) = json.loads(catalog_path.read_text())["models"]  # the glob has no entry
    assert entry["slug"] == "deepseek-chat" and entry["context_window"] == 65536
    assert entry["input_modalities"] == ["text"]
    assert entry["apply_patch_tool_type"] == "freeform"
    # Built on the bundled entry, not written from memory: its prompt and fields are there.
    assert entry["base_instructions"].startswith("You are Codex")
    assert {"truncation_policy", "shell_type", "model_messages"} <= set(entry)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--catalog", "x.json"], "--catalog needs --routes FILE"),
        (["--routes", "/nonexistent/routes.toml"], "routes.toml: cannot be read"),
        (["--routes", "{bad}", "--catalog", "c.json"], ': [models."m"] provider: unknown'),
        (["--routes", "{good}", "--catalog", "c.json", "--codex", "/nonexistent/codex"], "codex"),
    ],
)
def test_codex_config_errors_are_one_line(argv, message, tmp_path, capsys):
    bad, good = tmp_path / "bad.toml", tmp_path / "good.toml"
    bad.write_text('[providers.p]\nbase_url = "http://x/v1"\n[models.m]\nprovider = "q"\n')
    good.write_text(ROUTES)
    argv = [a.format(bad=bad, good=good) for a in argv]
    assert main(["codex-config", *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("mitmrelay codex-config: ") and message in err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert not (Path.cwd() / "c.json").exists()
