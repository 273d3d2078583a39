#!/usr/bin/env bash
# The phone path on an emulated arm64, on an x86-64 Debian/Ubuntu host (root): what can be proven
# about deploy/termux/hammer-termux.sh without a phone. Run on demand (not part of CI):
#
#   sudo bash deploy/termux/emulate.sh            # everything; about an hour the first time
#   HAMMER_ARM64_CACHE=/path sudo bash ...         # cache elsewhere (default /root/.cache/hammer/arm64)
#
# Steps (each timed; the summary is printed at the end, also on failure):
#   1. host tools: qemu-user-static + binfmt_misc, the aarch64 cross compilers, debootstrap, ccache
#   2. an arm64 Debian bookworm userland (debootstrap --foreign, second stage under qemu), a venv in it
#   3. the llama.cpp build flags the Termux script chooses, read from its --dry-run inside the
#      userland: for a Snapdragon 8 Gen 3 (dotprod, fp16, i8mm) and for a CPU without dotprod
#   4. the server's dependencies as aarch64 wheels, downloaded on the host (pip resolving in
#      emulation is many times slower); the script's pip steps install from them
#   5. cross-compile llama-cpp-python (the project's pinned version, from its sdist) with each set
#      of flags; check the dotprod/i8mm instructions are in (or out of) the built library
#   6. the Hammer prompt, grammar and prompt tokens of one tool-call request (the serving layer's
#      own code), and greedy decoding of it with the x86-64 build
#   7. greedy decoding of the same tokens and grammar under qemu-aarch64 -cpu max with both arm64
#      builds: the generated tokens must equal the x86-64 build's
#   8. the Termux script itself, for real, in the userland: device check, storage, llama-cpp-python
#      step (the cross-built wheel, accepted by the script's own build stamp), server install
#      with pip, the model step with the embedded GGUF, then `hammer serve`
#   9. the openai SDK against that server: one schema-valid tool call and one refusal
#
# Not exercised (see deploy/README.md): Termux's own packages (pkg, clang, Android's libc),
# compiling llama.cpp on the device, the Hugging Face download, and speed.

set -euo pipefail

CACHE=${HAMMER_ARM64_CACHE:-/root/.cache/hammer/arm64}
SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "${SCRIPT_DIR}/../.." && pwd)
# shellcheck disable=SC2016 # the pattern matches the script's literal ${...} text
LLAMA_CPP_PYTHON_VERSION=$(sed -n 's/^LLAMA_CPP_PYTHON_VERSION=\${LLAMA_CPP_PYTHON_VERSION:-\([0-9.]*\)}$/\1/p' \
    "${SCRIPT_DIR}/hammer-termux.sh")
SUITE=bookworm   # Python 3.11, as on the host: the wheelhouse is downloaded for cp311
MIRROR=${HAMMER_DEBIAN_MIRROR:-http://deb.debian.org/debian}
ROOTFS=${CACHE}/rootfs
WHEELHOUSE=${CACHE}/wheelhouse   # aarch64 wheels for the userland
CASE=${CACHE}/case               # the tool-call request's tokens, grammar and each build's output
PORT=${HAMMER_EMULATE_PORT:-18080}
THREADS=2
# Inside the userland.
VENV=/opt/hammer-venv
SHIM=/opt/termux-shim
SRC=/opt/hammer-src
WORK=/opt/hammer-emulate

# CPU features as Android's /proc/cpuinfo lists them (qemu-user passes the host's cpuinfo
# through, so the Termux script reads these instead): the phone the issue targets, and one
# without dotprod for the armv8-a fallback.
SD8GEN3_FEATURES="fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm jscvt fcma lrcpc dcpop sha3 sm3 sm4 asimddp sha512 asimdfhm dit uscat ilrcpc flagm ssbs sb paca pacg dcpodp flagm2 frint i8mm bf16 bti"
SD835_FEATURES="fp asimd evtstrm aes pmull sha1 sha2 crc32"
VARIANTS=(dotprod armv8a)

# ----- timing and cleanup ---------------------------------------------------------------------
TIMES=()
T0=${SECONDS}
summary() {
    local rc=$?
    printf '\n==> step times\n'
    printf '%s\n' "${TIMES[@]}"
    printf '%6ds  total (%s)\n' $((SECONDS - T0)) "$( ((rc == 0)) && echo ok || echo "FAILED, exit ${rc}")"
}
timed() {
    local name=$1 t=${SECONDS}
    shift
    printf '\n==> %s\n' "${name}"
    "$@"
    TIMES+=("$(printf '%6ds  %s' $((SECONDS - t)) "${name}")")
    printf '    done in %ds\n' $((SECONDS - t))
}
die() {
    printf 'error: %s\n' "$*" >&2
    exit 1
}

SERVER_PID=
cleanup() {
    [[ -z ${SERVER_PID} ]] || kill "${SERVER_PID}" 2>/dev/null || true
    [[ -z ${SERVER_PID} ]] || wait "${SERVER_PID}" 2>/dev/null || true
    local m
    for m in sys proc dev; do
        if mountpoint -q "${ROOTFS}/${m}"; then umount -l "${ROOTFS}/${m}" || true; fi
    done
}
trap 'summary; cleanup' EXIT

# in_arm64 CMD...: run CMD in the userland under qemu-aarch64 -cpu max (the binfmt handler
# reads QEMU_CPU), with a clean environment; extra variables with env before CMD. Emulation
# is heavy and the host is shared: it yields to everything else.
# Every program in the chain execs the next, so a background run's $! is the final process.
ARM64=(nice -n 19 chroot "${ROOTFS}" /usr/bin/env -i HOME=/root LANG=C.UTF-8 QEMU_CPU=max
    PATH="${VENV}/bin:${SHIM}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
in_arm64() { "${ARM64[@]}" "$@"; }

# heavy CMD...: the host is shared; compiles yield to everything else.
heavy() { nice -n 19 "$@"; }

# ----- 1. host tools --------------------------------------------------------------------------
host_tools() {
    [[ $(uname -m) == x86_64 && ${EUID} -eq 0 ]] || die "run as root on an x86-64 Linux host"
    [[ -n ${LLAMA_CPP_PYTHON_VERSION} ]] || die "cannot read LLAMA_CPP_PYTHON_VERSION from hammer-termux.sh"
    local need=() p
    for p in qemu-user-static binfmt-support gcc-aarch64-linux-gnu g++-aarch64-linux-gnu debootstrap ccache; do
        dpkg -s "${p}" >/dev/null 2>&1 || need+=("${p}")
    done
    if ((${#need[@]})); then
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}"
    fi
    if [[ ! -e /proc/sys/fs/binfmt_misc/register ]]; then
        mount binfmt_misc -t binfmt_misc /proc/sys/fs/binfmt_misc
    fi
    update-binfmts --enable qemu-aarch64 >/dev/null 2>&1 || true
    grep -q '^flags: .*F' /proc/sys/fs/binfmt_misc/qemu-aarch64 ||
        die "qemu-aarch64 is not registered with binfmt_misc (with the F flag, needed inside a chroot)"
    python -c "import llama_cpp, sys; v = llama_cpp.__version__; sys.exit(v != '${LLAMA_CPP_PYTHON_VERSION}' and f'host llama-cpp-python is {v}, not ${LLAMA_CPP_PYTHON_VERSION}')"
    python -c 'import hammer.server, openai, jsonschema' ||
        die "install the project on the host first: pip install -e '.[llama,test]'"
    info "qemu: $(qemu-aarch64-static --version | head -1); cross compiler: $(aarch64-linux-gnu-gcc -dumpfullversion)"
}
info() { printf '    %s\n' "$*"; }

# ----- 2. the arm64 userland ------------------------------------------------------------------
mount_userland() {
    mountpoint -q "${ROOTFS}/proc" || mount -t proc proc "${ROOTFS}/proc"
    mountpoint -q "${ROOTFS}/sys" || mount -t sysfs sys "${ROOTFS}/sys"
    mountpoint -q "${ROOTFS}/dev" || mount --bind /dev "${ROOTFS}/dev"
    cp /etc/resolv.conf "${ROOTFS}/etc/resolv.conf"
    # The host's trusted CAs: behind a TLS-inspecting proxy Debian's own bundle fails every
    # HTTPS request (the script's network check among them).
    cp /etc/ssl/certs/ca-certificates.crt "${ROOTFS}/etc/ssl/certs/ca-certificates.crt"
}

userland() {
    if [[ ! -e ${ROOTFS}/.hammer-ready ]]; then
        rm -rf "${ROOTFS}.tmp"
        heavy debootstrap --foreign --arch=arm64 --variant=minbase \
            --include=python3,python3-venv,python3-pip,python-is-python3,ca-certificates,curl,libgomp1 \
            "${SUITE}" "${ROOTFS}.tmp" "${MIRROR}"
        heavy chroot "${ROOTFS}.tmp" /debootstrap/debootstrap --second-stage
        rm -rf "${ROOTFS}"
        mv "${ROOTFS}.tmp" "${ROOTFS}"
        touch "${ROOTFS}/.hammer-ready"
    fi
    mount_userland
    [[ $(in_arm64 uname -m) == aarch64 ]] || die "the userland does not run as aarch64"
    [[ -x ${ROOTFS}${VENV}/bin/python ]] || in_arm64 python3 -m venv "${VENV}"
    # The CPU qemu presents: dotprod (HWCAP_ASIMDDP) and i8mm (HWCAP2_I8MM) must be there for
    # the dotprod build's kernels to run at all.
    in_arm64 python -c '
import ctypes, sys
getauxval = ctypes.CDLL(None).getauxval
getauxval.restype = ctypes.c_ulong
hwcap, hwcap2 = getauxval(16), getauxval(26)
dotprod, i8mm, fp16 = bool(hwcap & 1 << 20), bool(hwcap2 & 1 << 13), bool(hwcap & 1 << 10)
print(f"    emulated CPU: asimddp={dotprod} i8mm={i8mm} asimdhp={fp16}")
sys.exit(not (dotprod and i8mm and fp16))' || die "qemu -cpu max does not offer dotprod, i8mm and fp16"
    mkdir -p "${ROOTFS}${WORK}" "${ROOTFS}${SHIM}"
    printf 'processor\t: 0\nFeatures\t: %s\n' "${SD8GEN3_FEATURES}" >"${ROOTFS}${WORK}/cpuinfo-dotprod"
    printf 'processor\t: 0\nFeatures\t: %s\n' "${SD835_FEATURES}" >"${ROOTFS}${WORK}/cpuinfo-armv8a"
    # Termux's pkg does not exist on Debian: log what the script asks for. The packages it
    # installs are build tools for compiling on the phone, which the cross-built wheel replaces.
    cat >"${ROOTFS}${SHIM}/pkg" <<'EOF'
#!/bin/sh
echo "pkg (Termux only, not run here): $*" >&2
EOF
    chmod +x "${ROOTFS}${SHIM}/pkg"
    # The checkout as the script sees it on a phone: the tracked and new files, no .git or caches.
    rm -rf "${ROOTFS}${SRC}"
    mkdir -p "${ROOTFS}${SRC}"
    (cd "${REPO}" && git ls-files -z --cached --others --exclude-standard |
        while IFS= read -r -d '' f; do [[ -e ${f} ]] && printf '%s\0' "${f}"; done | tar --null -T - -cf -) |
        tar -xf - -C "${ROOTFS}${SRC}"
    cp "$(python -c 'from hammer.server.settings import Settings; print(Settings().model_path())')" \
        "${ROOTFS}${WORK}/model.gguf"
}

# ----- 3. the script's flags ------------------------------------------------------------------
# script_env VARIANT: the environment the Termux script runs with in the userland (PREFIX=/usr
# passes its Termux check; the CPU features are the simulated phone's).
script_env() {
    echo "PREFIX=/usr HAMMER_CPUINFO=${WORK}/cpuinfo-$1 HAMMER_NET_CHECK_URL=https://pypi.org/simple/"
}

declare -A CMAKE_ARGS_OF
script_flags() {
    local v out args extra
    for v in "${VARIANTS[@]}"; do
        extra=()
        [[ ${v} == armv8a ]] && extra=(--allow-slow-cpu)
        # A fresh HAMMER_HOME: no build stamp, so the dry run shows the build it would do.
        # shellcheck disable=SC2046 # script_env's words are separate VAR=value arguments
        out=$(in_arm64 $(script_env "${v}") HAMMER_HOME=/tmp/dry-run-home \
            bash "${SRC}/deploy/termux/hammer-termux.sh" --dry-run --no-start --model "${WORK}/model.gguf" \
            "${extra[@]}" 2>&1) || { printf '%s\n' "${out}"; die "the Termux script's dry run failed (${v})"; }
        args=$(printf '%s\n' "${out}" | sed -n 's/.*+ env CMAKE_ARGS=\(.*\) CMAKE_BUILD_PARALLEL_LEVEL=.*/\1/p' | head -1)
        [[ -n ${args} ]] || { printf '%s\n' "${out}"; die "no CMAKE_ARGS in the dry run's output (${v})"; }
        CMAKE_ARGS_OF[${v}]=${args}
        info "${v}: ${args}"
    done
}

# ----- 4. cross-compiled llama-cpp-python -----------------------------------------------------
sdist() {
    local tarball=${CACHE}/llama_cpp_python-${LLAMA_CPP_PYTHON_VERSION}.tar.gz
    [[ -f ${tarball} ]] || python -m pip download --quiet --no-binary :all: --no-deps -d "${CACHE}" \
        "llama-cpp-python==${LLAMA_CPP_PYTHON_VERSION}"
    echo "${tarball}"
}

wheel_of() { find "${CACHE}/wheels-$1" -name 'llama_cpp_python-*-linux_aarch64.whl' -print -quit 2>/dev/null || true; }

cross_build() {
    local v args tarball src stamp whl lib
    tarball=$(sdist)
    for v in "${VARIANTS[@]}"; do
        args=${CMAKE_ARGS_OF[${v}]}
        stamp=${CACHE}/wheels-${v}/flags
        if [[ -n $(wheel_of "${v}") && -f ${stamp} && $(<"${stamp}") == "${args}" ]]; then
            info "${v}: cached $(basename "$(wheel_of "${v}")")"
        else
            # A fresh tree and build directory each time: llama-cpp-python's CMakeLists also
            # installs the libraries into the source tree, which the wheel packs. The path
            # stays the same, so ccache (paths relative to the cache) reuses every object
            # whose flags did not change: only ggml-cpu differs between the variants.
            src=${CACHE}/llama-cpp-python-src
            rm -rf "${src}" "${CACHE}/build-${v}" "${CACHE}/wheels-${v}"
            mkdir -p "${src}"
            tar -xzf "${tarball}" -C "${src}" --strip-components=1
            CCACHE_DIR=${CACHE}/ccache CCACHE_BASEDIR=${CACHE} CMAKE_BUILD_PARALLEL_LEVEL=$(nproc) \
                CMAKE_ARGS="-DCMAKE_TOOLCHAIN_FILE=${SCRIPT_DIR}/aarch64-linux-gnu.cmake -DCMAKE_C_COMPILER_LAUNCHER=ccache -DCMAKE_CXX_COMPILER_LAUNCHER=ccache ${args}" \
                heavy python -m pip wheel --quiet --no-deps -w "${CACHE}/wheels-${v}" \
                -C build-dir="${CACHE}/build-${v}" "${src}"
            # A ctypes package (py3-none): only the platform tag is wrong after a cross build.
            # The wheel tool runs from its wheel in the wheelhouse (pure Python), not installed.
            PYTHONPATH=$(find "${WHEELHOUSE}" -name 'wheel-*-py3-none-any.whl' -print -quit) \
                python -m wheel tags --remove --platform-tag linux_aarch64 "${CACHE}/wheels-${v}"/*.whl >/dev/null
            printf '%s\n' "${args}" >"${stamp}"
        fi
        whl=$(wheel_of "${v}")
        lib=${CACHE}/lib-${v}
        rm -rf "${lib}"
        mkdir -p "${lib}"
        python -m zipfile -e "${whl}" "${lib}.unzip"
        cp "${lib}.unzip"/llama_cpp/lib/* "${lib}/"
        rm -rf "${lib}.unzip"
        check_kernels "${v}" "${lib}/libggml-cpu.so"
    done
}

# check_kernels VARIANT LIB: the dot-product (sdot) and int8 matrix-multiply (smmla) instructions
# are compiled in for the dotprod build and absent from the armv8-a one.
check_kernels() {
    local sdot smmla
    file -L "$2" | grep -q 'ARM aarch64' || die "$2 is not an arm64 library"
    sdot=$(aarch64-linux-gnu-objdump -d "$2" | grep -cw sdot || true)
    smmla=$(aarch64-linux-gnu-objdump -d "$2" | grep -cw smmla || true)
    info "$1: $(basename "$2"): ${sdot} sdot, ${smmla} smmla instructions"
    if [[ $1 == dotprod ]]; then
        ((sdot > 0 && smmla > 0)) || die "the dotprod build has no dotprod/i8mm kernels"
    else
        ((sdot == 0 && smmla == 0)) || die "the armv8-a build uses ARMv8.2+ instructions"
    fi
}

# ----- 6./7. greedy tokens: x86-64 vs arm64 ---------------------------------------------------
x86_reference() {
    rm -rf "${CASE}"
    python "${SCRIPT_DIR}/emulate_check.py" prepare "${CASE}"
    heavy python "${SCRIPT_DIR}/emulate_check.py" greedy "${CASE}" --model "$(<"${CASE}/model_path")" \
        --out "${CASE}/x86_64.json" --threads "${THREADS}"
}

# The wheels the userland needs, downloaded on the host for aarch64/cp311: the server's and
# llama-cpp-python's dependencies, the server's build backend, and the wheel tool (step 5).
wheelhouse() {
    local deps
    deps=$(python - "${REPO}/pyproject.toml" <<'EOF'
import sys, tomllib
project = tomllib.load(open(sys.argv[1], "rb"))
print("\n".join(project["project"]["dependencies"] + project["build-system"]["requires"]))
EOF
    )
    # shellcheck disable=SC2086 # one requirement per word
    python -m pip download --quiet -d "${WHEELHOUSE}" --only-binary :all: --platform manylinux2014_aarch64 \
        --python-version 3.11 --implementation cp --abi cp311 ${deps} numpy typing-extensions diskcache \
        "jinja2>=2.11.3" wheel
    rm -rf "${ROOTFS}${WORK}/wheelhouse"
    cp -r "${WHEELHOUSE}" "${ROOTFS}${WORK}/wheelhouse"
}

arm64_greedy() {
    local v whl
    whl=$(wheel_of dotprod)
    cp "${whl}" "${ROOTFS}${WORK}/"
    rm -rf "${ROOTFS}${WORK}/lib-armv8a"
    cp -r "${CACHE}/lib-armv8a" "${ROOTFS}${WORK}/lib-armv8a"
    cp "${SCRIPT_DIR}/emulate_check.py" "${ROOTFS}${WORK}/"
    rm -rf "${ROOTFS}${WORK}/case"
    cp -r "${CASE}" "${ROOTFS}${WORK}/case"
    in_arm64 PIP_NO_INDEX=1 PIP_FIND_LINKS="${WORK}/wheelhouse" python -m pip install --quiet \
        --force-reinstall "${WORK}/$(basename "${whl}")"
    local key cached
    mkdir -p "${CACHE}/greedy"
    for v in "${VARIANTS[@]}"; do
        # Emulated decoding takes minutes: a result is reused while everything it depends on
        # (the build, the request's tokens and grammar, the model, the decoding code, qemu) is
        # byte for byte the same.
        key=$(cat "${CACHE}/lib-${v}"/* "${CASE}/prompt_tokens.json" "${CASE}/grammar.gbnf" \
            "${ROOTFS}${WORK}/model.gguf" "${SCRIPT_DIR}/emulate_check.py" /usr/bin/qemu-aarch64-static |
            sha256sum | cut -c1-16)
        cached=${CACHE}/greedy/${v}-${key}.json
        if [[ -f ${cached} ]]; then
            info "${v}: cached result of these exact inputs (${cached})"
        else
            local lib_env=()
            # The armv8-a build: the same Python package, pointed at the other library.
            [[ ${v} == armv8a ]] && lib_env=(LLAMA_CPP_LIB_PATH="${WORK}/lib-armv8a")
            in_arm64 "${lib_env[@]}" python "${WORK}/emulate_check.py" greedy "${WORK}/case" \
                --model "${WORK}/model.gguf" --out "${WORK}/case/arm64-${v}.json" --threads "${THREADS}"
            cp "${ROOTFS}${WORK}/case/arm64-${v}.json" "${cached}"
        fi
        cp "${cached}" "${CASE}/arm64-${v}.json"
    done
    python "${SCRIPT_DIR}/emulate_check.py" compare "${CASE}/x86_64.json" "${CASE}/arm64-dotprod.json" \
        "${CASE}/arm64-armv8a.json"
}

# ----- 8./9. the Termux script for real, and the served calls ---------------------------------
termux_script() {
    local home=/root/.hammer
    # What the script's step 4 would have built on this CPU: the cross-built wheel, recorded in
    # the script's own stamp format, so the script accepts it only if its flags are the ones
    # the wheel was built with.
    mkdir -p "${ROOTFS}${home}"
    printf 'llama-cpp-python==%s CMAKE_ARGS=%s\n' "${LLAMA_CPP_PYTHON_VERSION}" "${CMAKE_ARGS_OF[dotprod]}" \
        >"${ROOTFS}${home}/llama-cpp-python.stamp"
    # Without its stamp the script takes its first-install path (the server with its
    # dependencies) every run, not the quick reinstall of the server's own code.
    rm -f "${ROOTFS}${home}/server.stamp"
    # shellcheck disable=SC2046 # script_env's words are separate VAR=value arguments
    "${ARM64[@]}" $(script_env dotprod) HAMMER_HOME="${home}" HAMMER_REQUEST_TIMEOUT=3600 \
        PIP_NO_INDEX=1 PIP_FIND_LINKS="${WORK}/wheelhouse" \
        bash "${SRC}/deploy/termux/hammer-termux.sh" --model "${WORK}/model.gguf" \
        --port "${PORT}" --threads "${THREADS}" --n-ctx 4096 >"${CACHE}/termux-script.log" 2>&1 &
    SERVER_PID=$!
    local deadline=$((SECONDS + 3600))
    until curl -sf "http://127.0.0.1:${PORT}/health" >/dev/null; do
        if ! kill -0 "${SERVER_PID}" 2>/dev/null; then
            cat "${CACHE}/termux-script.log"
            die "the Termux script exited before the server answered"
        fi
        ((SECONDS < deadline)) || die "the server did not answer /health within an hour"
        sleep 5
    done
    grep -E '^==>|^    |^warning|^pkg' "${CACHE}/termux-script.log" | grep -v '^    +' || true
    grep -q 'already built with these flags' "${CACHE}/termux-script.log" ||
        die "the Termux script did not accept the cross-built llama-cpp-python (its flags differ)"
}

served_calls() {
    python "${SCRIPT_DIR}/emulate_check.py" client "http://127.0.0.1:${PORT}"
}

mkdir -p "${CACHE}"
timed "1. host tools" host_tools
timed "2. arm64 Debian userland" userland
timed "3. the Termux script's llama.cpp flags (dry run in the userland)" script_flags
timed "4. aarch64 wheels of the server's dependencies, downloaded on the host" wheelhouse
timed "5. cross-compile llama-cpp-python ${LLAMA_CPP_PYTHON_VERSION} for arm64 (both variants)" cross_build
timed "6. x86-64: prompt, grammar and greedy tokens of a tool-call request" x86_reference
timed "7. arm64 (qemu -cpu max): greedy tokens of both builds vs x86-64" arm64_greedy
timed "8. the Termux script in the userland, up to hammer serve answering" termux_script
timed "9. openai SDK: a tool call and a refusal from the arm64 server" served_calls
