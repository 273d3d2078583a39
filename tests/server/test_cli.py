"""The ``hammer`` console script: flags from the settings model, and ``hammer prompt``."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from server.cli import build_parser
from server.commands.settings_args import settings_from_args
from server.hammer_format import render_prompt
from tests.server.tools_fixtures import TOOLS, user


def hammer(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "server.cli", *args], input=stdin, capture_output=True, text=True,
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
