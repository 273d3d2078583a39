"""The OpenAI Responses API (``POST /v1/responses``) over the same ``ChatService`` as chat completions:
a request is converted to a chat request (``convert``), its events become a Response object or the
Responses SSE events (``build``), and finished responses are kept per API key (``store``)."""
