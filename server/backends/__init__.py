"""Backends registered by name and imported lazily: ``vllm`` need not import on a phone,
nor ``llama_cpp`` on a GPU box."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from hammer.server.backends.base import EngineUnavailable

if TYPE_CHECKING:
    from hammer.server.backends.base import Backend
    from hammer.server.settings import Settings

BACKENDS: dict[str, str] = {
    "llama": "hammer.server.backends.llamacpp:LlamaCppBackend",
    "vllm": "hammer.server.backends.vllm:VLLMBackend",
    "fake": "hammer.server.backends.fake:FakeBackend",
}


def load_backend(settings: Settings) -> Backend:
    """Instantiate the backend ``settings.backend`` names (does not load the model yet)."""
    try:
        module_name, class_name = BACKENDS[settings.backend].split(":")
    except KeyError:
        raise ValueError(f"unknown backend {settings.backend!r}; choose one of {', '.join(BACKENDS)}") from None
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise EngineUnavailable(
            f"backend {settings.backend!r} needs a package that is not installed ({exc.name}); "
            f"install it with: pip install 'hammer-server[{settings.backend}]'"
        ) from exc
    return getattr(module, class_name)(settings)
