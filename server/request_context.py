"""What the HTTP layer knows about the current request that code below it may need, as context
variables (each request runs in its own task, and ``asyncio.to_thread`` carries them along).

Routes read ``request.state.api_key_id``; the llama.cpp backend, which sees no request, reads
``API_KEY_ID`` to keep each key's prompts in a prefix cache of their own (``--cache-per-key``).
"""

from __future__ import annotations

from contextvars import ContextVar

#: The id of the API key the current request authenticated with (a hash, never the key); None when
#: the server has no keys or the path is public. Set by ``AuthAndMetricsMiddleware`` only.
API_KEY_ID: ContextVar[str | None] = ContextVar("api_key_id", default=None)
