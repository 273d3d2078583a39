"""Every example in the README prints what the README shows, run as written against the real server.

The Python blocks run in order in one namespace (a later block uses the earlier ``client``), each
``print(...)`` checked against the comment beside or under it; the curl blocks run with curl and their
output is checked against the comment under them. In a shown output ``…`` stands for any text (ids,
timestamps); everything else must match, whitespace aside. Only the base URL is changed: the server
runs on a free port.
"""

from __future__ import annotations

import contextlib
import io
import re
import shlex
import subprocess
from pathlib import Path

import pytest

from hammer.processes import REPO

pytestmark = pytest.mark.slow

README = REPO / "README.md"
_PRINT = re.compile(r"^print\((?P<expr>.*)\)\s*(?:#\s?(?P<shown>.*))?$")


def blocks(path: Path, language: str) -> list[str]:
    """The fenced code blocks of one language, in order."""
    return re.findall(rf"^```{language}\n(.*?)^```", path.read_text(), flags=re.S | re.M)


def shown(lines: list[str], start: int) -> tuple[str, int]:
    """The comment lines from ``start`` on (an example's shown output), joined; and the line after them."""
    parts = []
    while start < len(lines) and lines[start].startswith("#"):
        parts.append(lines[start][1:].strip())
        start += 1
    return " ".join(parts), start


def matches(actual: str, expected: str) -> bool:
    """``actual`` is ``expected`` with each ``…`` standing for any text, whitespace aside (a shown output
    is wrapped over comment lines)."""
    pattern = ".*?".join(re.escape(part) for part in "".join(expected.split()).split("…"))
    return re.fullmatch(pattern, "".join(actual.split()), flags=re.S) is not None


def checked_python(source: str) -> str:
    """The block with each ``print(x)`` and its shown output turned into a check of ``x``'s text."""
    lines, out, i = source.splitlines(), [], 0
    while i < len(lines):
        found = _PRINT.match(lines[i])
        if found is None:
            out.append(lines[i])
            i += 1
            continue
        expected, i = shown(lines, i + 1)
        expected = found["shown"] or expected
        assert expected, f"README: {lines[i - 1]!r} shows no output"
        out.append(f"_check({found['expr']}, {expected!r})")
    return "\n".join(out)


def test_matches_treats_the_ellipsis_as_any_text():
    assert matches("call_abc123 done", "call_… done") and not matches("call_abc done!", "call_… done")


def test_python_examples_print_what_the_readme_shows(llama_server):
    checked: list[tuple[str, str]] = []

    def check(value: object, expected: str) -> None:
        text = str(value)
        checked.append((text, expected))
        assert matches(text, expected), f"README shows {expected!r}, the example printed {text!r}"

    namespace: dict[str, object] = {"_check": check}
    examples = blocks(README, "python")
    assert examples
    for source in examples:
        code = checked_python(source.replace("http://127.0.0.1:8000", llama_server))
        with contextlib.redirect_stdout(io.StringIO()):
            exec(compile(code, "README.md", "exec"), namespace)  # noqa: S102 - our own README
    assert len(checked) >= len(examples), "every example prints something the README shows"


def test_curl_examples_print_what_the_readme_shows(llama_server):
    examples = [b for b in blocks(README, "bash") if b.lstrip().startswith("curl ")]
    assert examples
    for source in examples:
        lines = source.splitlines()
        end = next(i for i, line in enumerate(lines) if line.startswith("#"))
        command = " ".join(lines[:end]).replace("http://127.0.0.1:8000", llama_server)
        expected, _ = shown(lines, end)
        output = subprocess.run(shlex.split(command), capture_output=True, text=True, timeout=300, check=True).stdout
        assert matches(output, expected), f"README shows {expected!r}, curl printed {output!r}"
