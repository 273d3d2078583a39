"""The ``hammer`` console script: flags from the settings model, and ``hammer prompt``."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys

import pytest
from hammer.server.commands.settings_args import settings_from_args

from hammer.cli import build_parser
from hammer.prompt_format import render_prompt
from tests.server.tools_fixtures import TOOLS, user


def hammer(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "hammer.cli", *args], input=stdin, capture_output=True, text=True,
                          timeout=120)


class TestSettingsFlags:
    def test_flags_override_env(self, monkeypatch):
        monkeypatch.setenv("HAMMER_PORT", "9001")
        monkeypatch.setenv("HAMMER_N_CTX", "1024")
        args = build_parser().parse_args(["serve", "--port", "9002", "--api-key", "a,b", "--prompt-format",
                                          "hammer-1.0"])
        settings = settings_from_args(args)
        assert (settings.port, settings.n_ctx, settings.api_key, settings.prompt_format) == \
            (9002, 1024, ["a", "b"], "hammer-1.0")

    def test_bad_value_exits_with_a_message(self):
        args = build_parser().parse_args(["serve", "--n-ctx", "ten"])
        with pytest.raises(SystemExit, match="--n-ctx"):
            settings_from_args(args)

    def test_every_setting_has_a_flag(self):
        help_text = hammer("serve", "--help").stdout
        for flag in ("--host", "--port", "--model", "--backend", "--served-model-name", "--n-ctx", "--n-threads",
                     "--api-key", "--prompt-format", "--max-queue"):
            assert flag in help_text


class TestUnknownFlags:
    """A mistyped flag is named under its command's usage, with the flag it probably meant."""

    @pytest.mark.parametrize(("args", "words"), [
        (("serve", "--prot", "8000"), "unrecognized arguments: --prot 8000 (did you mean --port?)"),
        (("serve", "--zzzz"), "unrecognized argument: --zzzz (see: hammer serve --help)"),
        (("eval", "--base-url", "u", "--output", "o", "--limt", "3"), "(did you mean --limit?)"),
    ])
    def test_says_what_was_meant(self, args, words):
        result = hammer(*args)
        assert result.returncode == 2
        assert result.stderr.startswith(f"usage: hammer {args[0]} ") and words in result.stderr.splitlines()[-1]


class TestHelp:
    def test_every_setting_is_in_one_section(self):
        from hammer.server.commands.settings_args import SECTIONS
        from hammer.server.settings import Settings

        listed = [name for names in SECTIONS.values() for name in names]
        assert sorted(listed) == sorted(Settings.model_fields)  # each once, none left out

    def test_help_reads_by_topic_and_offers_the_real_backends(self):
        help_text = hammer("serve", "--help").stdout
        assert "--backend {llama,vllm}" in help_text
        for title in ("model:", "llama.cpp backend:", "vLLM backend:", "request limits:"):
            assert f"\n{title}\n" in help_text
        model_help = " ".join(help_text.split("\n  --model MODEL", 1)[1].split("--backend", 1)[0].split())
        assert model_help.count("default") == 1, model_help

    @pytest.mark.parametrize("name", ["fake", "nope"])  # fake: the tests' scripted backend
    def test_only_the_real_backends_are_offered(self, name):
        result = hammer("serve", "--backend", name)
        assert result.returncode == 2
        assert f"unknown backend {name!r}; choose one of llama, vllm" in result.stderr.splitlines()[-1]


class TestSwitches:
    """On/off settings are switch pairs, as in vLLM and llama.cpp, not ``--flag true``."""

    def test_switches_set_and_clear(self):
        args = build_parser().parse_args(["serve", "--enforce-eager", "--no-flash-attn", "--no-loop-guard",
                                          "--metrics-public"])
        settings = settings_from_args(args)
        assert (settings.enforce_eager, settings.flash_attn, settings.loop_guard, settings.metrics_public) == \
            (True, False, False, True)

    def test_a_switch_overrides_the_env_and_absent_keeps_it(self, monkeypatch):
        monkeypatch.setenv("HAMMER_FLASH_ATTN", "false")
        monkeypatch.setenv("HAMMER_DEDUPE_CALLS", "false")
        settings = settings_from_args(build_parser().parse_args(["serve", "--flash-attn"]))
        assert settings.flash_attn is True and settings.dedupe_calls is False

    def test_unset_platform_switch_stays_unset(self):
        # None lets the vLLM backend choose for the platform (eager on CPU).
        assert settings_from_args(build_parser().parse_args(["serve"])).enforce_eager is None

    def test_every_boolean_setting_is_a_switch_pair(self):
        from hammer.server.settings import Settings

        help_text = " ".join(hammer("serve", "--help").stdout.split())
        booleans = [name for name, field in Settings.model_fields.items() if field.annotation in (bool, bool | None)]
        assert len(booleans) >= 6
        for name in booleans:
            flag = name.replace("_", "-")
            if name.startswith("no_"):  # already the "off" side (--no-lora): one switch, not --no-no-lora
                assert f"--{flag} " in help_text and f"--no-{flag}" not in help_text, flag
            else:
                assert f"--{flag}, --no-{flag}" in help_text, flag

    def test_a_value_after_a_switch_is_refused(self):
        result = hammer("serve", "--enforce-eager", "true")
        assert result.returncode == 2 and "unrecognized argument: true" in result.stderr


class TestPromptCommand:
    def test_prints_the_exact_prompt(self, tmp_path):
        request = {"messages": user("What's the weather in Oslo?"), "tools": TOOLS}
        path = tmp_path / "request.json"
        path.write_text(json.dumps(request))
        result = hammer("prompt", str(path))
        assert result.returncode == 0, result.stderr
        assert result.stdout == render_prompt([t["function"] for t in TOOLS], request["messages"])
        assert result.stdout.endswith("<|im_start|>assistant\n")

    def test_stdin_and_hammer_1_0(self):
        result = hammer("prompt", "-", "--prompt-format", "hammer-1.0",
                        stdin=json.dumps({"messages": user("hi"), "tools": TOOLS}))
        assert "[BEGIN OF QUERY]\nhi\n[END OF QUERY]" in result.stdout

    def test_invalid_request_is_a_clear_error(self, tmp_path):
        path = tmp_path / "bad.json"
        path.write_text(json.dumps({"messages": user("x"), "tool_choice": "required"}))
        result = hammer("prompt", str(path))
        assert result.returncode == 2 and "tool_choice" in result.stderr and "Traceback" not in result.stderr


    @pytest.mark.parametrize("args,stdin,words", [
        (("prompt", "/nonexistent/request.json"), None, "cannot read /nonexistent/request.json: No such file"),
        (("prompt", "-"), "{bad", "standard input is not a JSON chat request"),
    ])
    def test_unreadable_request_is_one_line(self, args, stdin, words):
        result = hammer(*args, stdin=stdin)
        assert result.returncode == 2 and result.stderr.strip().count("\n") == 0 and words in result.stderr


def one_line_error(result: subprocess.CompletedProcess) -> str:
    """The failure's stderr: no traceback, one ``hammer serve: ...`` line (last, after uvicorn's INFO lines
    where the failure comes from the app's startup)."""
    assert "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.strip().splitlines()
    assert lines and lines[-1].startswith("hammer serve: "), result.stderr
    assert not [line for line in lines[:-1] if not line.startswith("INFO:")], result.stderr
    return lines[-1]


class TestServeStartupErrors:
    """Every startup failure: one line naming the problem and what to do, a non-zero exit, no traceback."""

    @pytest.mark.parametrize(("args", "status", "words"), [
        (["--model", "nope.gguf"], 2, ["model file not found: nope.gguf", "--model"]),
        (["--n-ctx", "ten"], 2, ["--n-ctx", "integer", "--help"]),
        (["--port", "eighty"], 2, ["--port"]),
        (["--port", "70000"], 2, ["--port 70000", "1-65535"]),
        (["--api-key-file", "/nonexistent/keys.txt"], 2, ["--api-key-file /nonexistent/keys.txt",
                                                           "No such file"]),
    ])
    def test_bad_settings(self, args, status, words):
        result = hammer("serve", *args)
        assert result.returncode == status, result.stderr
        line = one_line_error(result)
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr  # nothing else printed
        for word in words:
            assert word in line

    def test_a_file_that_is_not_gguf(self, tmp_path):
        path = tmp_path / "model.gguf"
        path.write_text("not a model")
        result = hammer("serve", "--model", str(path))
        assert result.returncode == 2
        assert f"{path} is not a GGUF file" in one_line_error(result)

    def test_a_directory_for_the_llama_backend(self, tmp_path):
        result = hammer("serve", "--model", str(tmp_path))
        assert result.returncode == 2 and "--backend vllm" in one_line_error(result)

    def test_port_in_use(self):
        import socket

        with socket.socket() as taken:
            taken.bind(("127.0.0.1", 0))
            taken.listen()
            port = taken.getsockname()[1]
            result = hammer("serve", "--port", str(port))  # found taken before the model loads
        assert result.returncode == 1
        assert f"port {port} on 127.0.0.1 is already in use" in one_line_error(result)

    @pytest.mark.skipif(importlib.util.find_spec("vllm") is not None, reason="vLLM is importable here")
    def test_vllm_not_installed(self):
        result = hammer("serve", "--backend", "vllm", "--model", "some/model")
        assert result.returncode == 2
        assert "pip install 'hammer-server[vllm]'" in one_line_error(result)

    def test_a_model_that_fails_to_load(self, tmp_path):
        # Passes the pre-checks (GGUF magic), fails in llama.cpp during the app's startup (lifespan).
        path = tmp_path / "broken.gguf"
        path.write_bytes(b"GGUF" + b"\0" * 60)
        result = hammer("serve", "--model", str(path), "--port", "0")
        assert result.returncode == 1
        line = one_line_error(result)
        assert "could not load" in line and str(path) in line
        assert "Application startup failed" not in result.stderr
