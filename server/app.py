"""FastAPI app factory: thin routes over ``ChatService``, errors mapped in one place."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from typing import Any, AsyncIterator, Awaitable, TypeVar

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response, StreamingResponse
from hammer.server.backends import load_backend
from hammer.server.backends.base import Backend
from hammer.server.errors import (APIError, BackendUnavailable, NotFound, error_body, route_not_found,
                                  validation_error)
from hammer.server.metrics import Metrics
from hammer.server.messages.errors import AnthropicErrorShape
from hammer.server.messages.routes import add_messages_routes
from hammer.server.middleware import AuthAndMetricsMiddleware
from hammer.server.openapi import chat_sse_schema, errors_documented, openapi_schema
from hammer.server.protocol import ChatCompletionRequest, ChatCompletionResponse, ModelCard, ModelList
from hammer.server.responses.routes import add_responses_routes
from hammer.server.serving import ChatService
from hammer.server.settings import Settings
from hammer.server.streaming import stream_chunks
from starlette.background import BackgroundTask
from starlette.exceptions import HTTPException as StarletteHTTPException

log = logging.getLogger(__name__)
T = TypeVar("T")


def create_app(settings: Settings, backend: Backend | None = None) -> FastAPI:
    """The server; ``backend`` defaults to the one ``settings.backend`` names, loaded at startup."""

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine = backend or load_backend(settings)
        info = await engine.start()
        app.state.metrics.track_prefix_cache(engine.prefix_cache_stats)  # None where the backend keeps none
        app.state.service = ChatService(engine, info, settings, app.state.metrics)
        log.info("serving %s with the %s backend", info.name, settings.backend)
        async with _metrics_listener(settings, app.state.metrics), _exit_when_dead(app, engine):
            try:
                yield
            finally:
                await engine.close()

    app = FastAPI(title="Hammer function-calling server", version="0.1.0", lifespan=lifespan)
    app.state.metrics = Metrics()
    app.state.settings = settings
    app.state.failure = None
    _install_error_handlers(app)
    public = {"/health", "/metrics"} if settings.metrics_public else {"/health"}
    app.add_middleware(AuthAndMetricsMiddleware, api_keys=settings.api_keys(), metrics=app.state.metrics,
                       public_paths=frozenset(public), max_body_bytes=settings.max_body_bytes,
                       routes=app.router.routes)
    app.add_middleware(AnthropicErrorShape)  # errors of /v1/messages* as Anthropic's; outermost: the 401s too

    @app.get("/health", responses=errors_documented(503))
    async def health(request: Request) -> dict[str, str]:
        problem = request.app.state.service.backend.health_error()
        if problem is not None:
            raise BackendUnavailable(problem, code="backend_unhealthy")
        return {"status": "ok"}

    if settings.metrics_port is None:
        @app.get("/metrics", responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}}},
                                        **errors_documented(401)})
        async def metrics(request: Request) -> Response:
            return Response(request.app.state.metrics.render(), media_type="text/plain; version=0.0.4")

    @app.get("/v1/models", response_model=ModelList, responses=errors_documented(401))
    async def models(request: Request) -> ModelList:
        # The base model and each LoRA adapter served on it (--lora), the default first.
        return ModelList(data=[ModelCard(id=i) for i in request.app.state.service.info.model_ids()])

    @app.get("/v1/models/{model_id:path}", response_model=ModelCard, responses=errors_documented(401, 404))
    async def model(model_id: str, request: Request) -> ModelCard:
        ids = request.app.state.service.info.model_ids()
        if model_id not in ids:
            raise NotFound(f"The model {model_id!r} does not exist; this server serves {', '.join(map(repr, ids))}.",
                           param="model", code="model_not_found")
        return ModelCard(id=model_id)

    @app.post("/v1/chat/completions", response_model=ChatCompletionResponse,
              responses={200: {"content": {"text/event-stream": {"schema": chat_sse_schema()}},
                               "description": "A chat completion, or with `stream: true` its chunks as SSE"},
                         **errors_documented(400, 401, 404, 429, 503, 504)})
    async def chat_completions(body: ChatCompletionRequest, request: Request) -> Any:
        service: ChatService = request.app.state.service
        prepared = await service.prepare(body)
        if body.stream:
            ticket = service.gate.admit()  # a full queue answers 429 before the stream starts
            return StreamingResponse(stream_chunks(service, prepared, ticket), media_type="text/event-stream",
                                     headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
                                     background=BackgroundTask(ticket.release))  # if the stream never ran
        return await _until_disconnected(request, service.complete(prepared))

    add_responses_routes(app, settings, _until_disconnected)  # POST/GET/DELETE /v1/responses
    add_messages_routes(app, _until_disconnected)  # POST /v1/messages, /v1/messages/count_tokens
    app.openapi = lambda: openapi_schema(app)  # type: ignore[method-assign]
    return app


@contextlib.asynccontextmanager
async def _metrics_listener(settings: Settings, metrics: Metrics) -> AsyncIterator[None]:
    """With ``--metrics-port``: /metrics on a port of its own (prometheus_client's threaded server)."""
    if settings.metrics_port is None:
        yield
        return
    from prometheus_client import start_http_server

    try:
        server, thread = start_http_server(settings.metrics_port, settings.host, registry=metrics.registry)
    except OSError as exc:
        raise OSError(f"--metrics-port {settings.metrics_port} on {settings.host}: {exc.strerror}") from None
    log.info("metrics on http://%s:%d/metrics", settings.host, settings.metrics_port)
    try:
        yield
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@contextlib.asynccontextmanager
async def _exit_when_dead(app: FastAPI, backend: Backend, interval_s: float = 2.0) -> AsyncIterator[None]:
    """Shut down gracefully once the backend cannot serve until a restart (a dead vLLM engine), so
    the supervisor (docker's restart policy, systemd, Kubernetes) starts a fresh server;
    ``app.state.failure`` then says why (``hammer serve`` exits non-zero)."""

    async def watch() -> None:
        while (problem := backend.health_error()) is None:
            await asyncio.sleep(interval_s)
        log.error("the backend cannot serve any more (%s): shutting down so that it is restarted", problem)
        app.state.failure = problem
        signal.raise_signal(signal.SIGTERM)  # uvicorn's handler: stop accepting, finish, exit

    task = asyncio.create_task(watch())
    try:
        yield
    finally:
        task.cancel()


async def _until_disconnected(request: Request, work: Awaitable[T]) -> T | Response:
    """Run ``work``, cancelling it (and freeing its generation slot) if the client goes away."""
    task = asyncio.ensure_future(work)
    try:
        while True:
            done, _ = await asyncio.wait({task}, timeout=0.25)
            if done:
                return task.result()
            if await request.is_disconnected():
                await _cancelled(task)
                return Response(status_code=499)
    except asyncio.CancelledError:
        # uvicorn cancels what still runs when --shutdown-timeout ends: answer instead of a bare 500.
        await _cancelled(task)
        error = BackendUnavailable("The server is shutting down; retry the request.", code="server_shutting_down")
        return JSONResponse(error.body(), status_code=error.status_code)


async def _cancelled(task: asyncio.Future[Any]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(APIError)
    async def api_error(_: Request, exc: APIError) -> JSONResponse:
        return JSONResponse(exc.body(), status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        error = validation_error(list(exc.errors()), request.headers.get("content-type"))
        return JSONResponse(error.body(), status_code=error.status_code)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        if exc.status_code == 404 and exc.detail == "Not Found":  # no such route (a route's own 404 is an APIError)
            paths = [getattr(route, "path", "") for route in request.app.router.routes]
            error = route_not_found(request.method, request.url.path, paths)
            return JSONResponse(error.body(), status_code=error.status_code)
        kind = "not_found_error" if exc.status_code == 404 else "invalid_request_error"
        # exc.headers carries 405's Allow header, which RFC 9110 requires.
        return JSONResponse(error_body(str(exc.detail), kind), status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(Exception)
    async def unexpected(_: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error", exc_info=exc)
        return JSONResponse(error_body("The server had an error while processing your request.", "server_error"),
                            status_code=500)
