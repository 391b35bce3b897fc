#!/usr/bin/env bash
# Builds examples/aoti/runner.cpp against the installed torch's libtorch (no CMake needed):
#   bash examples/aoti/build.sh [OUTPUT]   (default: out/aoti/aoti_runner)
# Needs g++ with C++20, the CUDA runtime headers ($CUDA_HOME/include) and a CUDA build of torch.
set -euo pipefail
cd "$(dirname "$0")/../.."
OUTPUT=${1:-out/aoti/aoti_runner}
PY=${PY:-python3}
CUDA_HOME=${CUDA_HOME:-/usr/local/cuda}
TORCH_DIR=$($PY -c 'import os, torch; print(os.path.dirname(torch.__file__))')
ABI=$($PY -c 'import torch; print(int(torch.compiled_with_cxx11_abi()))')
mkdir -p "$(dirname "$OUTPUT")"
set -x
${CXX:-g++} -O2 -std=c++20 -D_GLIBCXX_USE_CXX11_ABI="$ABI" examples/aoti/runner.cpp -o "$OUTPUT" \
  -I"$TORCH_DIR/include" -I"$TORCH_DIR/include/torch/csrc/api/include" -I"$CUDA_HOME/include" \
  -L"$TORCH_DIR/lib" -Wl,-rpath,"$TORCH_DIR/lib" -Wl,-rpath,"$TORCH_DIR/../nvidia/cu13/lib" -Wl,-rpath,"$CUDA_HOME/lib64" \
  -Wl,--no-as-needed -ltorch -ltorch_cuda -ltorch_cpu -lc10_cuda -lc10 \
  -Wl,--as-needed -L"$CUDA_HOME/lib64" -lcudart -ldl
