# Sourced by scripts/test.sh and scripts/demo.sh: a virtual environment with torch, the optional
# TensorRT stack and torch_mish built from this checkout. Idempotent: a second run only rebuilds.
#
#   TORCH_MISH_VENV   where the environment lives (default: .venv in the checkout)
#   TORCH_SPEC        the torch to install (default torch==2.14.1)
#   TORCH_TRT_SPEC    torch-tensorrt package (default torch-tensorrt-rtx==2.14.0, which builds
#                     TensorRT engines without a GPU; set to "" to skip)
#   plus the build knobs in setup.py (TORCH_MISH_CUDA, TORCH_CUDA_ARCH_LIST, TENSORRT_INCLUDE_DIR, ...)
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV=${TORCH_MISH_VENV:-$ROOT/.venv}
TORCH_SPEC=${TORCH_SPEC:-torch==2.14.1}
TORCH_TRT_SPEC=${TORCH_TRT_SPEC-torch-tensorrt-rtx==2.14.0}

step() { printf '\n==> %s\n' "$*"; }

if [ ! -x "$VENV/bin/python" ]; then
  step "creating virtual environment $VENV"
  python3 -m venv "$VENV"
fi
PY="$VENV/bin/python"
export PATH="$VENV/bin:$PATH"
# pip install, without the warnings about this machine's unreachable local index folders.
pip_install() {
  "$PY" -m pip install --disable-pip-version-check -q "$@" 2>&1 | { grep -v 'is ignored: it is neither a file' || true; }
  return "${PIPESTATUS[0]}"
}

if ! "$PY" -c 'import torch' 2>/dev/null; then
  step "installing $TORCH_SPEC (a CUDA build: several GB)"
  pip_install "$TORCH_SPEC"
fi
step "installing build and test dependencies"
pip_install ninja numpy pytest hypothesis onnx onnxscript onnxruntime setuptools wheel tqdm timm pillow
if [ -n "$TORCH_TRT_SPEC" ] && ! "$PY" -c 'import importlib.util as u; exit(u.find_spec("torch_tensorrt") is None)'; then
  step "installing $TORCH_TRT_SPEC (optional: TensorRT lowering tests skip without it)"
  pip_install "$TORCH_TRT_SPEC" || echo "warning: could not install $TORCH_TRT_SPEC; TensorRT tests will skip"
fi

if [ -z "${CUDA_HOME:-}" ] && [ -x /usr/local/cuda/bin/nvcc ]; then export CUDA_HOME=/usr/local/cuda; fi
# TensorRT headers for the plugin: the build looks in TENSORRT_INCLUDE_DIR, $TENSORRT_ROOT/include and
# where TensorRT's packages and archives install them, and prints what it found.

# The build's whole output goes to a log; a failed build stops here and shows its errors, so nothing
# runs against a previously compiled library.
step "building torch_mish (pip install --no-build-isolation -e .)"
BUILD_LOG="$VENV/torch_mish-build.log"
set +e
(cd "$ROOT" && "$PY" -m pip install --disable-pip-version-check --no-build-isolation --no-deps -v -e .) 2>&1 \
  | tee "$BUILD_LOG" | grep --line-buffered -E '\[torch_mish build\]' | awk '!seen[$0]++ { print; fflush() }'
build_status=${PIPESTATUS[0]}  # pip runs setup.py twice (metadata, then the build): awk drops the repeat
set -e
if [ "$build_status" -ne 0 ]; then
  printf '\nerror: the torch_mish build failed (exit status %s). Compiler errors:\n' "$build_status" >&2
  grep -E '(error|Error)[: ]' "$BUILD_LOG" | grep -v -E 'subprocess-exited-with-error|^ *note:' | head -n 40 >&2 || true
  printf '\nLast lines of the build log (%s):\n' "$BUILD_LOG" >&2
  tail -n 30 "$BUILD_LOG" >&2
  exit 1
fi
"$PY" -c 'import torch_mish; print("torch_mish build:", torch_mish.build_info())'
