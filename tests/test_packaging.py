"""pyproject.toml's packaging: one `hammer` namespace in site-packages, nothing generic at the top."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import tomllib
from hammer.server.settings import DEFAULT_ADAPTER_FILE

ROOT = Path(__file__).resolve().parents[1]


def _pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def test_listed_packages_are_exactly_the_folders_with_an_init():
    setuptools = _pyproject()["tool"]["setuptools"]
    folders = {namespace: Path(folder) for namespace, folder in setuptools["package-dir"].items()}
    on_disk = set()
    for namespace, folder in folders.items():
        for init in (ROOT / folder).rglob("__init__.py"):
            relative = init.parent.relative_to(ROOT / folder).parts
            on_disk.add(".".join((namespace, *relative)))
    assert set(setuptools["packages"]) == on_disk


def test_the_wheel_installs_only_hammer(tmp_path):
    # Built from a copy: setuptools leaves build/ in the source tree, and a stale build/lib would
    # put deleted modules into later wheels.
    source = tmp_path / "source"
    for name in ("pyproject.toml", "README.md"):
        source.mkdir(exist_ok=True)
        shutil.copy(ROOT / name, source / name)
    for folder in _pyproject()["tool"]["setuptools"]["package-dir"].values():
        shutil.copytree(ROOT / folder, source / folder, ignore=shutil.ignore_patterns("__pycache__"))
    # The embedded model's default adapter, where the repository keeps it (a placeholder: any bytes do).
    adapter = source / "hammer" / "models" / DEFAULT_ADAPTER_FILE
    adapter.parent.mkdir(exist_ok=True)
    adapter.write_bytes(b"GGUF placeholder")
    # Build isolation: pip installs the setuptools pyproject.toml asks for (>=77, for the SPDX
    # `license`) into a build environment of its own, whatever the one running the tests has.
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps",
                    "--wheel-dir", str(tmp_path), str(source)], check=True, timeout=300)
    (wheel,) = tmp_path.glob("hammer_server-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    top = {name.split("/")[0] for name in names}
    assert {t for t in top if not t.endswith(".dist-info")} == {"hammer"}
    # the three folders arrive under the namespace, with their subpackages
    for module in ("hammer/server/serving.py", "hammer/server/backends/llamacpp.py", "hammer/training/train.py",
                   "hammer/evaluation/pipeline.py", "hammer/prompt_format.py", "hammer/cli.py"):
        assert module in names
    assert f"hammer/models/{DEFAULT_ADAPTER_FILE}" in names  # package data: `hammer serve` applies it by default
