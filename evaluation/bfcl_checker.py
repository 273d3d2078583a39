"""bfcl-eval's own AST checker, imported without the model registry that pulls in every vendor SDK.

``bfcl_eval.eval_checker.ast_eval.ast_checker`` imports ``bfcl_eval.constants.model_config`` only to
look up ``MODEL_CONFIG_MAPPING[model_name].underscore_to_dot``; that module imports a handler for
every model BFCL knows (anthropic, cohere, google-genai, tree_sitter, ...), none of which
``pip install --no-deps bfcl-eval`` installs. The shim puts a stand-in for that one module in
``sys.modules`` while the checker imports, then takes it out again, so nothing else in the process
sees it. The stand-in answers ``underscore_to_dot=False`` for every model: ``hammer.evaluation.scoring``
maps the sent (underscored) names back to BFCL's before checking, so no rewriting is wanted.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import importlib
import importlib.metadata
import sys
import threading
import types
from typing import Any, Iterator, Mapping

# The version whose checker the conformance test (tests/evaluation/test_eval_bfcl_conformance.py) ran against.
BFCL_VERSION = "2026.3.23"
_CHECKER = "bfcl_eval.eval_checker.ast_eval.ast_checker"
_MODEL_CONFIG = "bfcl_eval.constants.model_config"
_STAND_IN_MODEL = "hammer-eval"

Call = dict[str, dict[str, Any]]  # {function_name: {param: value}}, BFCL's decoded call
Answer = dict[str, dict[str, list[Any]]]  # {function_name: {param: [allowed values]}}; "" = may be omitted


class _AnyModel(dict):
    def __missing__(self, key: str) -> types.SimpleNamespace:
        return types.SimpleNamespace(underscore_to_dot=False)


@contextlib.contextmanager
def modules_replaced(replacements: Mapping[str, Any]) -> Iterator[None]:
    """``sys.modules`` with ``replacements`` inside the block (None: taken out, so the next import
    loads it afresh), and as it was afterwards.

    >>> with modules_replaced({"copy": None}):  # this module imports copy: it is loaded
    ...     "copy" in sys.modules
    False
    >>> "copy" in sys.modules
    True
    """
    saved = {name: sys.modules.get(name) for name in replacements}
    try:
        _set_modules(replacements)
        yield
    finally:
        _set_modules(saved)


def _set_modules(modules: Mapping[str, Any]) -> None:
    """Put each module into ``sys.modules`` under its name; None takes the name out."""
    for name, module in modules.items():
        if module is None:
            sys.modules.pop(name, None)
        else:
            sys.modules[name] = module


# The first import swaps sys.modules entries: two scoring threads (--workers) doing it at once would
# restore each other's entries mid-import and load the real model registry (tree_sitter, ...).
_IMPORT_LOCK = threading.Lock()


def _bfcl() -> tuple[types.ModuleType, Any]:
    """The checker module and BFCL's ``Language.PYTHON``; ``ImportError`` says what to install."""
    with _IMPORT_LOCK:
        return _import_checker()


@functools.cache
def _import_checker() -> tuple[types.ModuleType, Any]:
    try:
        version = importlib.metadata.version("bfcl-eval")
    except importlib.metadata.PackageNotFoundError:
        raise ImportError(f"BFCL is not installed: pip install --no-deps bfcl-eval=={BFCL_VERSION}") from None
    stand_in = types.ModuleType(_MODEL_CONFIG)
    stand_in.MODEL_CONFIG_MAPPING = _AnyModel()  # type: ignore[attr-defined]
    try:
        with modules_replaced({_MODEL_CONFIG: stand_in, _CHECKER: None}):
            checker = importlib.import_module(_CHECKER)
            language = importlib.import_module("bfcl_eval.constants.enums").Language.PYTHON
    except ImportError as exc:
        raise ImportError(f"bfcl-eval {version}'s checker does not import ({exc}); "
                          f"this shim is tested with bfcl-eval=={BFCL_VERSION}") from None
    return checker, language


def check(functions: list[dict[str, Any]], calls: list[Call], answers: list[Answer],
          category: str) -> dict[str, Any]:
    """bfcl-eval's verdict, ``{"valid": bool, "error": [...], "error_type": str}``, for decoded ``calls``
    against BFCL's ``functions`` and possible ``answers`` (with BFCL's names)."""
    checker, language = _bfcl()
    # Copies: the entry is reused (masked run, report), and the checker is not ours to audit for mutation.
    return checker.ast_checker(copy.deepcopy(functions), copy.deepcopy(calls), copy.deepcopy(answers), language,
                               category, _STAND_IN_MODEL)
