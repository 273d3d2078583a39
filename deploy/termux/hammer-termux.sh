#!/usr/bin/env bash
# Hammer function-calling server on an Android phone, in Termux.
#
#   bash deploy/termux/hammer-termux.sh              # install what is missing, then serve
#   bash deploy/termux/hammer-termux.sh --dry-run    # print each step, change nothing
#   bash deploy/termux/hammer-termux.sh --help
#
# Steps (each one is skipped when already done, so re-running is safe and quick):
#   1. check the device: Termux, an arm64 CPU with ARMv8.2 dotprod (i8mm used when present)
#   2. check free storage for what is still to be installed and downloaded
#   3. install Termux packages with pkg (python, clang, cmake, rust, ...)
#   4. build llama-cpp-python for this CPU (-march=armv8.2-a+dotprod[+i8mm], OpenMP)
#   5. install the Hammer server from this checkout
#   6. fetch a Hammer2.1 Q4_K_M GGUF (or use --model PATH)
#   7. start `hammer serve` on 127.0.0.1
#
# Exit codes: 0 ok, 1 usage or other failure, 2 no network, 3 unsupported device or CPU,
# 4 not enough storage, 5 a package, build or install step failed, 6 bad model file.

set -euo pipefail

# ----- settings (flags override these environment variables) --------------------------------
HAMMER_HOME=${HAMMER_HOME:-${HOME}/.hammer}
HAMMER_PORT=${HAMMER_PORT:-8000}
HAMMER_N_CTX=${HAMMER_N_CTX:-4096}
# One generation at a time: the server's llama.cpp engine gives each parallel sequence a KV
# cache of --n-ctx cells, so its default of 4 would take four times the memory a phone has for it.
HAMMER_PARALLEL=${HAMMER_PARALLEL:-1}
HAMMER_N_THREADS=${HAMMER_N_THREADS:-}
HAMMER_MODEL=${HAMMER_MODEL:-}
HAMMER_MODEL_SIZE=${HAMMER_MODEL_SIZE:-1.5b}
HAMMER_MODEL_URL=${HAMMER_MODEL_URL:-}
LLAMA_CPP_PYTHON_VERSION=${LLAMA_CPP_PYTHON_VERSION:-0.3.36}
# Where the device is read from (tests point these at a simulated device).
HAMMER_CPUINFO=${HAMMER_CPUINFO:-/proc/cpuinfo}
HAMMER_MEMINFO=${HAMMER_MEMINFO:-/proc/meminfo}
HAMMER_SYS_CPU=${HAMMER_SYS_CPU:-/sys/devices/system/cpu}
HAMMER_NET_CHECK_URL=${HAMMER_NET_CHECK_URL:-https://huggingface.co}

DRY_RUN=0
START=1
OPENMP=1
ALLOW_SLOW_CPU=0
BUILD_MB=2500        # clang, rust, cmake and the llama.cpp build tree, with margin

PACKAGES=(python python-pip python-numpy clang cmake ninja make rust binutils git curl)

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
SOURCE_DIR=${HAMMER_SOURCE:-$(cd "${SCRIPT_DIR}/../.." && pwd)}

usage() {
    cat <<EOF
Usage: bash hammer-termux.sh [options]

Installs and starts the Hammer function-calling server in Termux (Android, arm64).

Options:
  --model PATH       serve this GGUF instead of downloading one
  --size SIZE        Hammer2.1 size to download: 0.5b, 1.5b (default), 3b or 7b
  --model-url URL    download the GGUF from URL instead
  --port N           port on 127.0.0.1 (default ${HAMMER_PORT})
  --threads N        llama.cpp threads (default: the phone's performance cores)
  --n-ctx N          context length in tokens (default ${HAMMER_N_CTX})
  --parallel N       generations decoded together, each with its own --n-ctx of KV cache
                     (default ${HAMMER_PARALLEL}: a phone's memory is for one)
  --no-openmp        build llama.cpp with its own thread pool instead of OpenMP
  --allow-slow-cpu   go on with a CPU without the ARMv8.2 dot-product instructions
  --no-start         install everything, do not start the server
  --dry-run          print each step and the commands it would run; change nothing
  -h, --help         this help

Environment: HAMMER_HOME (default ~/.hammer: models and build stamps), HAMMER_API_KEY
(API key(s) the server requires, comma-separated; unset: no auth, localhost only),
HAMMER_SOURCE (the server's source checkout; default: the checkout holding this script).
EOF
}

# ----- output and error helpers -------------------------------------------------------------
STEP=0
step() { STEP=$((STEP + 1)); printf '\n==> [%d/7] %s\n' "${STEP}" "$*"; }
info() { printf '    %s\n' "$*"; }
warn() { printf 'warning: %s\n' "$*" >&2; }
die() {
    local code=$1
    shift
    printf 'error: %s\n' "$*" >&2
    exit "${code}"
}

# run CMD...: run a command, or print it under --dry-run.
run() {
    if ((DRY_RUN)); then
        printf '    + %s\n' "$*"
    else
        "$@"
    fi
}

# ----- arguments ----------------------------------------------------------------------------
need_value() { [[ $# -ge 2 && -n $2 ]] || die 1 "$1 needs a value (see --help)"; }

while [[ $# -gt 0 ]]; do
    case $1 in
        --model) need_value "$@"; HAMMER_MODEL=$2; shift 2 ;;
        --size) need_value "$@"; HAMMER_MODEL_SIZE=$2; shift 2 ;;
        --model-url) need_value "$@"; HAMMER_MODEL_URL=$2; shift 2 ;;
        --port) need_value "$@"; HAMMER_PORT=$2; shift 2 ;;
        --threads) need_value "$@"; HAMMER_N_THREADS=$2; shift 2 ;;
        --n-ctx) need_value "$@"; HAMMER_N_CTX=$2; shift 2 ;;
        --parallel) need_value "$@"; HAMMER_PARALLEL=$2; shift 2 ;;
        --no-openmp) OPENMP=0; shift ;;
        --allow-slow-cpu) ALLOW_SLOW_CPU=1; shift ;;
        --no-start) START=0; shift ;;
        --dry-run) DRY_RUN=1; shift ;;
        -h | --help) usage; exit 0 ;;
        *) usage >&2; die 1 "unknown option: $1" ;;
    esac
done

is_uint() { [[ $1 =~ ^[0-9]+$ ]]; }
if ! is_uint "${HAMMER_PORT}" || ((HAMMER_PORT < 1 || HAMMER_PORT > 65535)); then
    die 1 "--port must be 1-65535, not '${HAMMER_PORT}'"
fi
is_uint "${HAMMER_N_CTX}" || die 1 "--n-ctx must be a number, not '${HAMMER_N_CTX}'"
if ! is_uint "${HAMMER_PARALLEL}" || ((HAMMER_PARALLEL < 1)); then
    die 1 "--parallel must be 1 or more, not '${HAMMER_PARALLEL}'"
fi
[[ -z ${HAMMER_N_THREADS} ]] || is_uint "${HAMMER_N_THREADS}" || die 1 "--threads must be a number, not '${HAMMER_N_THREADS}'"

# Hammer2.1 Q4_K_M GGUFs: MadeAgents publishes safetensors only; these are community
# quantizations (imatrix, llama.cpp Q4_K_M) of MadeAgents/Hammer2.1-* on the Hugging Face hub.
# Sizes in MB, for the storage check.
model_mb=0
case ${HAMMER_MODEL_SIZE} in
    0.5b) model_mb=400 ;;
    1.5b) model_mb=1000 ;;
    3b) model_mb=2000 ;;
    7b) model_mb=4700 ;;
    *) die 1 "--size must be 0.5b, 1.5b, 3b or 7b, not '${HAMMER_MODEL_SIZE}'" ;;
esac
if [[ -z ${HAMMER_MODEL_URL} ]]; then
    HAMMER_MODEL_URL="https://huggingface.co/Melvin56/Hammer2.1-${HAMMER_MODEL_SIZE}-GGUF/resolve/main/hammer2.1-${HAMMER_MODEL_SIZE}-Q4_K_M.gguf"
fi
if [[ -n ${HAMMER_MODEL} ]]; then
    model_path=${HAMMER_MODEL}
    model_mb=0
else
    model_path=${HAMMER_HOME}/models/${HAMMER_MODEL_URL##*/}
    model_path=${model_path%%\?*}
fi
served_name=$(basename "${model_path}" .gguf)

# ----- helpers ------------------------------------------------------------------------------
is_gguf() { [[ -f $1 && -s $1 && $(head -c 4 "$1" 2>/dev/null) == GGUF ]]; }

pkg_installed() { dpkg -s "$1" >/dev/null 2>&1; }

llama_importable() { python -c 'import llama_cpp' >/dev/null 2>&1; }

NETWORK_CHECKED=0
need_network() {
    ((NETWORK_CHECKED)) && return 0
    NETWORK_CHECKED=1
    if ((DRY_RUN)); then
        run curl -sSfI --max-time 15 "${HAMMER_NET_CHECK_URL}"
        return 0
    fi
    local metered=""
    ((model_mb > 0)) && metered=" (a metered connection downloads ${model_mb} MB for the model)"
    curl -sSfI --max-time 15 "${HAMMER_NET_CHECK_URL}" >/dev/null 2>&1 ||
        die 2 "no network: ${HAMMER_NET_CHECK_URL} cannot be reached (needed to $1). Connect to the internet${metered} and run this script again."
}

# Features line of /proc/cpuinfo (the first one: Android lists the same for every core).
cpu_features() { awk -F: '/^Features/ {print $2; exit}' "${HAMMER_CPUINFO}" 2>/dev/null || true; }

has_feature() { [[ " ${FEATURES} " == *" $1 "* ]]; }

# Performance cores: those whose top frequency is above the slowest cluster's (the little
# cores slow llama.cpp's threads down); every core when the phone has one cluster.
performance_cores() {
    local freqs=() f min=0 n=0
    for f in "${HAMMER_SYS_CPU}"/cpu[0-9]*/cpufreq/cpuinfo_max_freq; do
        [[ -r $f ]] && freqs+=("$(<"$f")")
    done
    if ((${#freqs[@]} == 0)); then
        nproc 2>/dev/null || echo 4
        return
    fi
    min=${freqs[0]}
    for f in "${freqs[@]}"; do ((f < min)) && min=$f; done
    for f in "${freqs[@]}"; do ((f > min)) && n=$((n + 1)); done
    ((n > 0)) || n=${#freqs[@]}
    echo "${n}"
}

free_mb() {
    local dir=$1
    while [[ ! -d ${dir} ]]; do dir=$(dirname "${dir}"); done
    df -Pk "${dir}" | awk 'NR == 2 {print int($4 / 1024)}'
}

# ----- 1. the device ------------------------------------------------------------------------
step "checking the device"
if [[ -z ${PREFIX:-} || ! -d ${PREFIX} || ${PREFIX} != */usr ]]; then
    die 3 "this script runs in Termux (PREFIX is '${PREFIX:-unset}'); install Termux from F-Droid or GitHub, not the Play Store build"
fi
arch=$(uname -m)
[[ ${arch} == aarch64 ]] || die 3 "unsupported CPU: ${arch}; Hammer on Termux needs a 64-bit ARM (aarch64) phone"
FEATURES=$(cpu_features)
has_feature asimd || die 3 "unsupported CPU: no Advanced SIMD (asimd) in ${HAMMER_CPUINFO} Features"
if has_feature asimddp; then
    march=armv8.2-a+dotprod
    has_feature asimdhp && march+=+fp16
    has_feature i8mm && march+=+i8mm
else
    ((ALLOW_SLOW_CPU)) || die 3 "unsupported CPU: no ARMv8.2 dot-product instructions (asimddp) in ${HAMMER_CPUINFO} Features; this phone (older than about 2019: Snapdragon 845 or earlier) would run Hammer very slowly. Re-run with --allow-slow-cpu to build for plain ARMv8 anyway."
    warn "no dot-product instructions: building for plain armv8-a; expect a few tokens per second at best"
    march=armv8-a
fi
threads=${HAMMER_N_THREADS:-$(performance_cores)}
mem_mb=$(awk '/^MemTotal:/ {print int($2 / 1024)}' "${HAMMER_MEMINFO}" 2>/dev/null || echo 0)
info "CPU: ${arch}, features used: ${march}, threads: ${threads}, memory: ${mem_mb} MB"
if ((model_mb > 0 && mem_mb > 0 && mem_mb < model_mb * 2 + 1024)); then
    warn "${mem_mb} MB of memory is tight for the ${HAMMER_MODEL_SIZE} model (${model_mb} MB file): Android may kill the server; try --size 0.5b"
fi

openmp_flag=ON
((OPENMP)) || openmp_flag=OFF
cmake_args="-DGGML_NATIVE=OFF -DGGML_CPU_ARM_ARCH=${march} -DGGML_OPENMP=${openmp_flag} -DGGML_LLAMAFILE=ON -DLLAVA_BUILD=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_TOOLS=OFF -DLLAMA_BUILD_SERVER=OFF"
llama_stamp=${HAMMER_HOME}/llama-cpp-python.stamp
llama_want="llama-cpp-python==${LLAMA_CPP_PYTHON_VERSION} CMAKE_ARGS=${cmake_args}"

# ----- 2. storage ---------------------------------------------------------------------------
step "checking storage"
missing=()
for p in "${PACKAGES[@]}"; do pkg_installed "${p}" || missing+=("${p}"); done
llama_done=0
if [[ -f ${llama_stamp} && $(<"${llama_stamp}") == "${llama_want}" ]] && llama_importable; then
    llama_done=1
fi
need_mb=512
((${#missing[@]} == 0 && llama_done)) || need_mb=$((need_mb + BUILD_MB))
if [[ -z ${HAMMER_MODEL} ]] && ! is_gguf "${model_path}"; then
    need_mb=$((need_mb + model_mb))
fi
have_mb=$(free_mb "${HAMMER_HOME}")
info "free: ${have_mb} MB in $(dirname "${HAMMER_HOME}"), needed: ${need_mb} MB"
((have_mb >= need_mb)) || die 4 "not enough storage: ${have_mb} MB free, ${need_mb} MB needed (build tools and the model). Free some space, choose a smaller --size, or point --model at a GGUF you already have."
run mkdir -p "${HAMMER_HOME}/models"

# ----- 3. Termux packages -------------------------------------------------------------------
step "Termux packages"
if ((${#missing[@]} == 0)); then
    info "all installed: ${PACKAGES[*]}"
else
    need_network "install Termux packages"
    info "installing: ${missing[*]}"
    run pkg install -y "${missing[@]}" ||
        die 5 "pkg install failed. Check the network, or pick another mirror with termux-change-repo, then run this script again."
fi

# ----- 4. llama-cpp-python ------------------------------------------------------------------
step "llama-cpp-python ${LLAMA_CPP_PYTHON_VERSION} for ${march}"
build_llama() {
    # --no-deps --force-reinstall rebuilds llama-cpp-python itself (new flags) without
    # touching numpy from pkg; the second install adds its small pure-Python dependencies.
    run env CMAKE_ARGS="$1" CMAKE_BUILD_PARALLEL_LEVEL="${threads}" FORCE_CMAKE=1 \
        python -m pip install --no-cache-dir --no-binary llama-cpp-python --no-deps --force-reinstall \
        "llama-cpp-python==${LLAMA_CPP_PYTHON_VERSION}" &&
        run python -m pip install "llama-cpp-python==${LLAMA_CPP_PYTHON_VERSION}"
}
if ((llama_done)); then
    info "already built with these flags (${llama_stamp})"
else
    need_network "download llama-cpp-python"
    info "compiling llama.cpp: 10 to 30 minutes on a phone; keep Termux in the foreground"
    if ! build_llama "${cmake_args}"; then
        if [[ ${openmp_flag} == ON ]]; then
            warn "the OpenMP build failed; retrying with llama.cpp's own thread pool (-DGGML_OPENMP=OFF)"
            cmake_args=${cmake_args/-DGGML_OPENMP=ON/-DGGML_OPENMP=OFF}
            llama_want="llama-cpp-python==${LLAMA_CPP_PYTHON_VERSION} CMAKE_ARGS=${cmake_args}"
            build_llama "${cmake_args}" || die 5 "building llama-cpp-python failed (see the compiler output above)"
        else
            die 5 "building llama-cpp-python failed (see the compiler output above)"
        fi
    fi
    if ! ((DRY_RUN)); then
        llama_importable || die 5 "llama-cpp-python was built but 'import llama_cpp' fails"
        printf '%s\n' "${llama_want}" >"${llama_stamp}"
    fi
fi

# ----- 5. the Hammer server -----------------------------------------------------------------
step "Hammer server from ${SOURCE_DIR}"
[[ -f ${SOURCE_DIR}/pyproject.toml && -d ${SOURCE_DIR}/server ]] ||
    die 1 "no server source in ${SOURCE_DIR}: run this script from a checkout of the project, or set HAMMER_SOURCE"
# pydantic-core and rpds-py have no wheels for Termux: pip compiles them with Rust (maturin
# needs the Android API level). The server is installed without the [llama] extra: llama-cpp-python
# is the build above, and the embedded demo model is not needed on a phone.
api_level=$(getprop ro.build.version.sdk 2>/dev/null || echo 24)
server_stamp=${HAMMER_HOME}/server.stamp
if [[ -f ${server_stamp} ]] && command -v hammer >/dev/null 2>&1; then
    # Dependencies are in place: reinstall only the server's own code (quick, picks up changes).
    run python -m pip install --no-deps --force-reinstall "${SOURCE_DIR}" ||
        die 5 "installing the Hammer server failed"
else
    need_network "download the server's Python dependencies"
    run env ANDROID_API_LEVEL="${api_level}" python -m pip install "${SOURCE_DIR}" ||
        die 5 "installing the Hammer server failed (see pip's output above)"
    ((DRY_RUN)) || printf 'installed\n' >"${server_stamp}"
fi

# ----- 6. the model -------------------------------------------------------------------------
step "model ${model_path}"
if [[ -n ${HAMMER_MODEL} ]]; then
    is_gguf "${model_path}" || die 6 "--model ${model_path}: not a GGUF file (missing, empty or no GGUF header)"
    info "using ${model_path}"
elif is_gguf "${model_path}"; then
    info "already downloaded"
else
    need_network "download the model"
    info "downloading ${HAMMER_MODEL_URL} (about ${model_mb} MB; resumes if interrupted)"
    run curl -fL --retry 3 --retry-delay 5 -C - -o "${model_path}.part" "${HAMMER_MODEL_URL}" ||
        die 2 "downloading the model failed (network?); run the script again to resume"
    if ! ((DRY_RUN)); then
        is_gguf "${model_path}.part" || {
            rm -f "${model_path}.part"
            die 6 "the download from ${HAMMER_MODEL_URL} is not a GGUF file; check --model-url"
        }
    fi
    run mv "${model_path}.part" "${model_path}"
fi

# ----- 7. serve -----------------------------------------------------------------------------
step "starting the server"
serve=(hammer serve --host 127.0.0.1 --port "${HAMMER_PORT}" --model "${model_path}"
    --served-model-name "${served_name}" --n-threads "${threads}" --n-ctx "${HAMMER_N_CTX}"
    --parallel "${HAMMER_PARALLEL}")
info "OpenAI base_url: http://127.0.0.1:${HAMMER_PORT}/v1   model: ${served_name}"
[[ -n ${HAMMER_API_KEY:-} ]] || info "no HAMMER_API_KEY set: no authentication (the server listens on localhost only)"
if ((!START)); then
    info "--no-start: run it with: ${serve[*]}"
    exit 0
fi
# Keep Android from suspending the CPU while serving (Termux:API's wake lock, when available).
if command -v termux-wake-lock >/dev/null 2>&1; then run termux-wake-lock; fi
if ((DRY_RUN)); then
    run "${serve[@]}"
    exit 0
fi
exec "${serve[@]}"
