import tomllib

from mitmrelay.cli import codex_config, main, mitmproxy_argv


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


def test_codex_config_is_valid_toml_for_a_custom_provider(capsys):
    assert main(["codex-config", "--model", "deepseek-chat"]) == 0
    config = tomllib.loads(capsys.readouterr().out)
    provider = config["model_providers"]["mitmrelay"]
    assert config["model"] == "deepseek-chat" and config["model_provider"] == "mitmrelay"
    assert provider["base_url"] == "http://127.0.0.1:4444/v1"
    assert provider["wire_api"] == "responses"


def test_codex_config_mentions_proxy_mode():
    args, _ = parse([])
    assert "HTTPS_PROXY=http://127.0.0.1:8080" in codex_config(args)
    assert "CODEX_CA_CERTIFICATE=" in codex_config(args)
