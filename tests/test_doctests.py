"""Every doctest in the packages runs, under the module's installed name (``hammer.server.grammar.regex``).

Not ``--doctest-modules``: pytest would import ``server/grammar/regex.py`` as ``server.grammar.regex``
(its folder name) next to the ``hammer.server.grammar.regex`` the code imports, so each module would
exist twice with two sets of classes, and the doctests would see exceptions named after the folder.
Here each file that holds an example is imported once, by the name ``pip install`` gives it.
"""

from __future__ import annotations

import doctest
import importlib
import importlib.util
import subprocess
from pathlib import Path

import pytest
import tomllib

from tests.conftest import require_vllm_python

ROOT = Path(__file__).resolve().parents[1]
# Imports vllm at the top: its doctests run in vLLM's own virtualenv when this one lacks it (as in CI).
IN_VLLM_VENV = "hammer.server.backends.vllm"
RUN = """
import doctest, importlib, sys
result = doctest.testmod(importlib.import_module(sys.argv[1]), optionflags=doctest.ELLIPSIS)
sys.exit(0 if result.attempted and not result.failed else 1)
"""


def modules_with_examples() -> list[str]:
    package_dir = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-dir"]
    names = set()
    for package, folder in package_dir.items():
        for path in (ROOT / folder).rglob("*.py"):
            if ">>>" in path.read_text(encoding="utf-8"):
                parts = path.relative_to(ROOT / folder).with_suffix("").parts
                names.add(".".join((package, *parts)).removesuffix(".__init__"))
    return sorted(names)


MODULES = modules_with_examples()


def test_the_examples_are_found():
    assert {"hammer.prompt_format", "hammer.server.grammar.regex", "hammer.training.masking",
            "hammer.evaluation.sample"} <= set(MODULES)


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.vllm) if n == IN_VLLM_VENV else n
                                  for n in MODULES])
def test_doctests(name, capsys):
    if name == IN_VLLM_VENV and importlib.util.find_spec("vllm") is None:
        done = subprocess.run([require_vllm_python(), "-c", RUN, name], capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stdout[-5000:] + done.stderr[-5000:]
        return
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0, f"{name} has '>>>' but no example doctest finds"
    assert result.failed == 0, capsys.readouterr().out
