#!/usr/bin/env bash
# Install check (CI, after the test suite): build a wheel and an sdist from this checkout, install each
# into a fresh virtual environment outside the checkout, and use it from there: every module of the
# installed package imports, every package and data file of the source tree was installed, and Mish
# runs forward and backward. Fails (exit status 1) on the first problem, saying which.
#
# The wheel is a CPU-only build (TORCH_MISH_CUDA=0) for speed: packaging does not depend on the CUDA
# kernels. Needs scripts/setup_env.sh's environment to build with (TORCH_MISH_VENV, default .venv).
#   TORCH_SPEC       the torch installed into the fresh environments (default torch==2.14.1)
#   TORCH_TRT_SPEC   installed into the wheel's environment so torch_mish.tensorrt is imported too
#                    (default torch-tensorrt-rtx==2.14.0; "" to skip)
#   CHECK_DIR        where the environments and artifacts go (default: a temporary folder, removed after)
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD_PY=${TORCH_MISH_VENV:-$ROOT/.venv}/bin/python
TORCH_SPEC=${TORCH_SPEC:-torch==2.14.1}
TORCH_TRT_SPEC=${TORCH_TRT_SPEC-torch-tensorrt-rtx==2.14.0}
WORK=${CHECK_DIR:-$(mktemp -d /tmp/torch_mish-install-check.XXXXXX)}
[ -n "${CHECK_DIR:-}" ] || trap 'rm -rf "$WORK"' EXIT
DIST="$WORK/dist"

step() { printf '\n==> install check: %s\n' "$*"; }
fail() {
  printf '\nINSTALL CHECK FAILED: %s\n' "$*" >&2
  exit 1
}
quiet_pip() { # pip install without the warnings about this machine's unreachable local index folders
  "$1" -m pip install --disable-pip-version-check -q "${@:2}" 2>&1 | { grep -v 'is ignored: it is neither a file' || true; }
  return "${PIPESTATUS[0]}"
}

[ -x "$BUILD_PY" ] || fail "no build environment at $BUILD_PY (run scripts/setup_env.sh first)"
case "$WORK" in "$ROOT"/*) fail "CHECK_DIR must be outside the checkout ($ROOT)" ;; esac
mkdir -p "$DIST"

step "building a wheel (CPU-only) and an sdist from $ROOT"
quiet_pip "$BUILD_PY" build || fail "could not install the 'build' package"
(cd "$ROOT" && TORCH_MISH_CUDA=0 "$BUILD_PY" -m build --no-isolation --wheel --sdist --outdir "$DIST" . \
  >"$WORK/build.log" 2>&1) || {
  tail -n 40 "$WORK/build.log" >&2
  fail "building the wheel/sdist failed (log: $WORK/build.log)"
}
WHEEL=$(ls "$DIST"/*.whl)
SDIST=$(ls "$DIST"/*.tar.gz)
echo "built $(basename "$WHEEL") and $(basename "$SDIST")"

# The abi3 tag must say what requires-python says (setup.py derives it from pyproject.toml).
MIN_PY=$(sed -n 's/^requires-python *= *">= *\([0-9]*\)\.\([0-9]*\)".*/\1\2/p' "$ROOT/pyproject.toml")
case "$(basename "$WHEEL")" in *-cp"$MIN_PY"-abi3-*) ;; *) fail "wheel $(basename "$WHEEL") is not tagged cp$MIN_PY-abi3 (requires-python >= ${MIN_PY:0:1}.${MIN_PY:1})" ;; esac

# What the installed package must contain: every file of torch_mish/ that git tracks, except
# build outputs (the build writes _build_info.py and lib/ itself).
EXPECTED="$WORK/expected-files.txt"
(cd "$ROOT" && git ls-files -co --exclude-standard torch_mish | grep -v -E '(^|/)__pycache__/|\.pyc$' | sort) >"$EXPECTED"

# The sdist must hold everything a build needs.
tar -tzf "$SDIST" | sed 's|^[^/]*/||' | sort >"$WORK/sdist-files.txt"
for required in setup.py pyproject.toml LICENSE README.md MANIFEST.in \
  $(cd "$ROOT" && git ls-files csrc build_helpers) $(cat "$EXPECTED"); do
  grep -qxF "$required" "$WORK/sdist-files.txt" || fail "the sdist lacks $required"
done
if grep -E '\.(so|o)$|_build_info\.py$' "$WORK/sdist-files.txt"; then fail "the sdist holds build outputs (above)"; fi

fresh_env() { # $1: folder; a new venv with torch, nothing from the checkout
  python3 -m venv "$1"
  quiet_pip "$1/bin/python" "$TORCH_SPEC" setuptools wheel ninja || fail "could not install $TORCH_SPEC into $1"
}

use_installed() { # $1: python of an environment holding an installed torch_mish; $2: what it came from
  # Run from an empty folder, so that nothing of the checkout can be imported by accident.
  mkdir -p "$WORK/run" && (cd "$WORK/run" && "$1" - "$EXPECTED" "$2") <<'EOF' || fail "the installed package from $2 does not work (above)"
import importlib
import importlib.util
import pkgutil
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

expected_files, origin = Path(sys.argv[1]), sys.argv[2]
import torch_mish

pkg = Path(torch_mish.__file__).resolve().parent
assert "site-packages" in str(pkg), f"imported torch_mish from {pkg}, not from the environment"
installed = {"torch_mish/" + p.relative_to(pkg).as_posix() for p in pkg.rglob("*") if p.is_file()}
missing = sorted(set(expected_files.read_text().split()) - installed)
assert not missing, f"{origin}: not installed: {missing}"
info = torch_mish.build_info()
shipped = sorted(p.name for p in (pkg / "lib").glob("*.so"))
assert shipped == sorted(info["tensorrt_plugins"]), f"{origin}: lib/ holds {shipped}, the build made {info['tensorrt_plugins']}"

have_trt = importlib.util.find_spec("torch_tensorrt") is not None
if have_trt and not torch.cuda.is_available():
    # torch_tensorrt asks for the GPU's capability at import; answer for a GPU-less CI machine.
    torch.cuda.get_device_capability = lambda device=None: (0, 0)
    torch.cuda.current_device = lambda: 0
modules = [m.name for m in pkgutil.walk_packages(torch_mish.__path__, "torch_mish.")]
for name in modules:
    if name.startswith("torch_mish.tensorrt") and not have_trt:
        continue
    importlib.import_module(name)
imported = sorted(m for m in sys.modules if m.startswith("torch_mish"))
print(f"{origin}: imported {len(imported)} modules: {', '.join(imported)}")

x = torch.randn(4, 8, dtype=torch.float64, requires_grad=True)
y = torch_mish.Mish()(x)
(g,) = torch.autograd.grad(y.sum(), x)
ref = x.detach().requires_grad_()
(g_ref,) = torch.autograd.grad(F.mish(ref).sum(), ref)
torch.testing.assert_close(y, F.mish(x))
torch.testing.assert_close(g, g_ref)
torch.testing.assert_close(torch.ops.mish.mish(x.detach().float()), F.mish(x.detach().float()))

from torch_mish.darknet import Darknet, packaged_cfg

converted = torch_mish.convert_mish(torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.Mish()))
assert isinstance(converted[1], torch_mish.Mish), f"{origin}: convert_mish left {converted[1]}"
model = Darknet(packaged_cfg("yolov4-csp")).eval()  # a cfg shipped as package data, 112 Mish layers
with torch.no_grad():
    outs = model(torch.randn(1, 3, 64, 64))
assert all(torch.isfinite(o).all() for o in (outs if isinstance(outs, (list, tuple)) else [outs]))
print(f"{origin}: forward and backward OK; build_info: {torch_mish.build_info()}")
EOF
}

step "installing the wheel into a fresh environment"
fresh_env "$WORK/venv-wheel"
quiet_pip "$WORK/venv-wheel/bin/python" "$WHEEL" || fail "pip could not install $(basename "$WHEEL")"
if [ -n "$TORCH_TRT_SPEC" ]; then
  quiet_pip "$WORK/venv-wheel/bin/python" "$TORCH_TRT_SPEC" || fail "could not install $TORCH_TRT_SPEC"
fi
use_installed "$WORK/venv-wheel/bin/python" "$(basename "$WHEEL")"
rm -rf "$WORK/venv-wheel"

step "installing the sdist into a fresh environment (it compiles there, CPU-only)"
fresh_env "$WORK/venv-sdist"
TORCH_MISH_CUDA=0 quiet_pip "$WORK/venv-sdist/bin/python" --no-build-isolation "$SDIST" \
  || fail "pip could not build and install $(basename "$SDIST")"
use_installed "$WORK/venv-sdist/bin/python" "$(basename "$SDIST")"

printf '\ninstall check passed: %s and %s install and work outside the checkout\n' "$(basename "$WHEEL")" "$(basename "$SDIST")"
