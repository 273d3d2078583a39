"""Every doctest in the packages runs, under the module's installed name (``hammer.server.grammar.regex``).

Not ``--doctest-modules``: pytest would import ``server/grammar/regex.py`` as ``server.grammar.regex``
(its folder name) next to the ``hammer.server.grammar.regex`` the code imports, so each module would
exist twice with two sets of classes, and the doctests would see exceptions named after the folder.
Here each file that holds an example is imported once, by the name ``pip install`` gives it.
"""

from __future__ import annotations

import doctest
import importlib
from pathlib import Path

import pytest
import tomllib

ROOT = Path(__file__).resolve().parents[1]
# Imports vLLM at the top, which this environment lacks (CI keeps vLLM in a virtualenv of its own):
# tests/server/backends/test_vllm.py runs its examples in that interpreter.
RUN_ELSEWHERE = {"hammer.server.backends.vllm"}


def modules_with_examples() -> list[str]:
    package_dir = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-dir"]
    names = set()
    for package, folder in package_dir.items():
        for path in (ROOT / folder).rglob("*.py"):
            if ">>>" in path.read_text(encoding="utf-8"):
                parts = path.relative_to(ROOT / folder).with_suffix("").parts
                names.add(".".join((package, *parts)).removesuffix(".__init__"))
    return sorted(names - RUN_ELSEWHERE)


MODULES = modules_with_examples()


def test_the_examples_are_found():
    assert {"hammer.prompt_format", "hammer.server.grammar.regex", "hammer.training.masking",
            "hammer.evaluation.sample"} <= set(MODULES)


@pytest.mark.parametrize("name", MODULES)
def test_doctests(name, capsys):
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0, f"{name} has '>>>' but no example doctest finds"
    assert result.failed == 0, capsys.readouterr().out
