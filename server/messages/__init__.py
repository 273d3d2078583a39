"""The Anthropic Messages API (``POST /v1/messages``, ``POST /v1/messages/count_tokens``) over the same
``ChatService`` as chat completions: a request is converted to a chat request (``convert``), its events
become an Anthropic message or Anthropic's SSE events (``build``), and errors on these paths take
Anthropic's shape (``errors``)."""
