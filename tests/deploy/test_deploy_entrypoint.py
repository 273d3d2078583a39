"""The CPU image's entrypoint, run outside Docker: the command and environment are read from
deploy/docker/Dockerfile.cpu and deploy/compose.yaml (nothing copied here), started on the
embedded SmolLM2 model on a free localhost port, and probed with the compose healthcheck."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from deploy_helpers import DOCKERFILES, REPO, env_example_active, load_compose, parse_dockerfile, service_environment

pytestmark = pytest.mark.slow

KEY = "entrypoint-test-key"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def host_command(command: list[str]) -> list[str]:
    """The image's argv on this machine: `hammer` is the console script for `hammer.cli:main`;
    where it is not installed on PATH, `python -m hammer.cli` runs the same function."""
    assert command[0] == "hammer"
    exe = shutil.which("hammer")
    return [exe, *command[1:]] if exe else [sys.executable, "-m", "hammer.cli", *command[1:]]


def container_environment() -> dict[str, str]:
    """The environment the container gets: the image's ENV, overridden by the compose service's,
    with a .env made from .env.example plus an API key."""
    compose_env = {**env_example_active(), "HAMMER_API_KEY": KEY}
    service = load_compose(compose_env)["services"]["hammer-cpu"]
    image_env = parse_dockerfile(DOCKERFILES["cpu"]).final.env()
    image_env.pop("PATH")  # the image's venv; here the test's interpreter stands in for it
    return {**image_env, **service_environment(service, compose_env)}


def healthcheck(env: dict[str, str]) -> subprocess.CompletedProcess[bytes]:
    """The compose healthcheck's command (CMD form), run as the container would run it."""
    service = load_compose({**env_example_active(), "HAMMER_API_KEY": KEY})["services"]["hammer-cpu"]
    test = service["healthcheck"]["test"]
    assert test[0] == "CMD" and test[1] == "python3"
    return subprocess.run([sys.executable, *test[2:]], env=env, capture_output=True, timeout=30)


@dataclass
class Server:
    url: str
    env: dict[str, str]
    proc: subprocess.Popen[bytes]
    log_path: Path


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    pytest.importorskip("llama_cpp")
    command = host_command(parse_dockerfile(DOCKERFILES["cpu"]).entrypoint_command())
    port = free_port()
    image_env = container_environment()
    # The only changes from the container: loopback instead of 0.0.0.0, and a free port.
    overrides = {"HAMMER_HOST": "127.0.0.1", "HAMMER_PORT": str(port)}
    assert set(overrides) <= set(image_env)
    clean = {k: v for k, v in os.environ.items() if not k.startswith("HAMMER_")}
    env = {**clean, **image_env, **overrides, "PYTHONPATH": str(REPO)}
    log_path = tmp_path_factory.mktemp("entrypoint") / "server.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT,
                                cwd=tmp_path_factory.getbasetemp())
    try:
        deadline = time.monotonic() + 300
        while healthcheck(env).returncode != 0:
            assert proc.poll() is None, f"{command} exited {proc.returncode}:\n{log_path.read_text()}"
            assert time.monotonic() < deadline, f"no healthy server after 300 s:\n{log_path.read_text()}"
            time.sleep(0.5)
        yield Server(f"http://127.0.0.1:{port}", env, proc, log_path)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_health_is_public(server: Server) -> None:
    url = server.url
    response = httpx.get(f"{url}/health", timeout=10)
    assert response.status_code == 200 and response.json() == {"status": "ok"}


def test_models_needs_the_compose_api_key(server: Server) -> None:
    url = server.url
    denied = httpx.get(f"{url}/v1/models", timeout=10)
    assert denied.status_code == 401 and denied.json()["error"]["code"] == "invalid_api_key"
    models = httpx.get(f"{url}/v1/models", headers={"Authorization": f"Bearer {KEY}"}, timeout=10)
    assert models.status_code == 200
    assert [m["id"] for m in models.json()["data"]] == ["smollm2-135m-instruct"], "the embedded default model"


def test_metrics_answer_for_prometheus(server: Server) -> None:
    url = server.url
    metrics = httpx.get(f"{url}/metrics", headers={"Authorization": f"Bearer {KEY}"}, timeout=10)
    assert metrics.status_code == 200 and "hammer_requests_total" in metrics.text


def test_sigterm_stops_it_cleanly_and_the_healthcheck_then_fails(
        server: Server) -> None:
    """`docker compose stop` sends SIGTERM and waits stop_grace_period (35 s) before SIGKILL."""
    assert healthcheck(server.env).returncode == 0
    server.proc.send_signal(signal.SIGTERM)
    # uvicorn shuts down gracefully, then re-raises the signal: exit status 143 under Docker.
    assert server.proc.wait(timeout=35) in (0, -signal.SIGTERM)
    log = server.log_path.read_text()
    assert "Application shutdown complete" in log and "Traceback" not in log, log
    assert healthcheck(server.env).returncode != 0, "the healthcheck must fail when nothing answers"
