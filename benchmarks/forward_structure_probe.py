"""Where the forward kernel's last few percent against ReLU go: the same elementwise loop built with
each block size, vectors per thread and cache policy, running copy, ReLU and Mish (torch_mish's math
from csrc/kernels/mish_math.h), timed next to ATen's ReLU, torch_mish's kernel and a clone.

If Mish in some structure matches ReLU in the same structure and ATen's ReLU, the shipped launch
configuration is what costs the difference; if Mish trails ReLU in every structure, the arithmetic
does (its latency between a thread's loads and its stores).

    python benchmarks/forward_structure_probe.py [--sizes 67108864,268435456] [--out out/forward_structure]

Built at run time with torch.utils.cpp_extension (nvcc, ninja), one translation unit per dtype and
block size. Writes <out>/forward_structure.{json,md}.
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import torch
from torch.utils.cpp_extension import load

ROOT = Path(__file__).resolve().parent.parent
THREADS = (128, 256, 512)
UNROLLS = (1, 2, 4, 8)
CACHES = {0: "default", 1: "streaming (ld/st .cs)", 2: "ld.global.nc"}
OPS = {0: "copy", 1: "relu", 2: "mish", 3: "mish, bf16x2 packing"}
DTYPES = {"float32": ("float", torch.float32), "bfloat16": ("__nv_bfloat16", torch.bfloat16)}

# Each 16-byte vector is handled as a uint4: four float32 words, or four words of two bfloat16 each.
KERNEL_TU = r"""
#include <cuda_bf16.h>
#include <cuda_runtime.h>
#include <cstdint>
#include "mish_math.h"

namespace {
template <int kCache>
__device__ __forceinline__ uint4 load16(const uint4* p) {
  if constexpr (kCache == 1) return __ldcs(p);
  else if constexpr (kCache == 2) return __ldg(p);
  else return *p;
}
template <int kCache>
__device__ __forceinline__ void store16(uint4* p, uint4 v) {
  if constexpr (kCache == 1) __stcs(p, v);
  else *p = v;
}
template <int kOp>
__device__ __forceinline__ float apply(float x) {
  if constexpr (kOp == 1) return fmaxf(x, 0.0f);
  else return mish::forward<float, true>(x);
}
__device__ __forceinline__ unsigned bf16_bits(__nv_bfloat16 v) { return __bfloat16_as_ushort(v); }

template <typename T, int kOp>
__device__ __forceinline__ unsigned word(unsigned w) {
  if constexpr (kOp == 0) {
    return w;
  } else if constexpr (sizeof(T) == 4) {
    return __float_as_uint(apply<kOp>(__uint_as_float(w)));
  } else {
    const float lo = apply<kOp>(__uint_as_float(w << 16));
    const float hi = apply<kOp>(__uint_as_float(w & 0xffff0000u));
    if constexpr (kOp == 3) {
      const __nv_bfloat162 p = __floats2bfloat162_rn(lo, hi);
      return bf16_bits(p.x) | (bf16_bits(p.y) << 16);
    } else {
      return bf16_bits(__float2bfloat16_rn(lo)) | (bf16_bits(__float2bfloat16_rn(hi)) << 16);
    }
  }
}

template <typename T, int kThreads, int kUnroll, int kCache, int kOp>
__global__ void __launch_bounds__(kThreads) probe_kernel(const uint4* a, uint4* out, int64_t nvec) {
  const int64_t base = static_cast<int64_t>(blockIdx.x) * kThreads * kUnroll + threadIdx.x;
  uint4 r[kUnroll];
#pragma unroll
  for (int u = 0; u < kUnroll; ++u) {
    const int64_t i = base + static_cast<int64_t>(u) * kThreads;
    if (i < nvec) r[u] = load16<kCache>(a + i);
  }
#pragma unroll
  for (int u = 0; u < kUnroll; ++u) {
    const int64_t i = base + static_cast<int64_t>(u) * kThreads;
    if (i < nvec) {
      const uint4 v = r[u];
      store16<kCache>(out + i, make_uint4(word<T, kOp>(v.x), word<T, kOp>(v.y), word<T, kOp>(v.z), word<T, kOp>(v.w)));
    }
  }
}

template <int kUnroll, int kCache, int kOp>
void launch_one(const void* a, void* out, int64_t nvec, cudaStream_t s) {
  const int64_t tile = int64_t{THREADS} * kUnroll;
  const unsigned blocks = static_cast<unsigned>((nvec + tile - 1) / tile);
  probe_kernel<DTYPE, THREADS, kUnroll, kCache, kOp><<<blocks, THREADS, 0, s>>>(
      static_cast<const uint4*>(a), static_cast<uint4*>(out), nvec);
}

template <int kUnroll>
int dispatch_cache_op(int cache, int op, const void* a, void* out, int64_t nvec, cudaStream_t s) {
#define PROBE_CASE(C, O) \
  if (cache == C && op == O) return launch_one<kUnroll, C, O>(a, out, nvec, s), 0;
  PROBE_CASE(0, 0) PROBE_CASE(0, 1) PROBE_CASE(0, 2) PROBE_CASE(0, 3)
  PROBE_CASE(1, 0) PROBE_CASE(1, 1) PROBE_CASE(1, 2) PROBE_CASE(1, 3)
  PROBE_CASE(2, 0) PROBE_CASE(2, 1) PROBE_CASE(2, 2) PROBE_CASE(2, 3)
#undef PROBE_CASE
  return 1;
}
}  // namespace

int LAUNCHER(int unroll, int cache, int op, const void* a, void* out, int64_t nvec, cudaStream_t s) {
  switch (unroll) {
    case 1: return dispatch_cache_op<1>(cache, op, a, out, nvec, s);
    case 2: return dispatch_cache_op<2>(cache, op, a, out, nvec, s);
    case 4: return dispatch_cache_op<4>(cache, op, a, out, nvec, s);
    case 8: return dispatch_cache_op<8>(cache, op, a, out, nvec, s);
  }
  return 1;
}
"""

BINDING_TU = r"""
#include <c10/cuda/CUDAStream.h>
#include <torch/extension.h>

{declarations}

void run(const at::Tensor& x, at::Tensor& out, int64_t threads, int64_t unroll, int64_t cache, int64_t op) {{
  TORCH_CHECK(x.is_contiguous() && out.is_contiguous() && x.nbytes() % 16 == 0 && out.nbytes() == x.nbytes());
  const int64_t nvec = x.nbytes() / 16;
  const cudaStream_t s = c10::cuda::getCurrentCUDAStream();
  int rc = 1;
  {dispatch}
  TORCH_CHECK(rc == 0, "no such variant");
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {{ m.def("run", &run); }}
"""


def build(workdir: Path) -> ModuleType:
    workdir.mkdir(parents=True, exist_ok=True)
    sources, declarations, dispatch = [], [], []
    for (dtype, (ctype, _)), threads in itertools.product(DTYPES.items(), THREADS):
        name = f"launch_{dtype}_{threads}"
        tu = workdir / f"{name}.cu"
        tu.write_text(f"#define DTYPE {ctype}\n#define THREADS {threads}\n#define LAUNCHER {name}\n" + KERNEL_TU)
        sources.append(str(tu))
        declarations.append(f"int {name}(int, int, int, const void*, void*, int64_t, cudaStream_t);")
        scalar = "at::kFloat" if dtype == "float32" else "at::kBFloat16"
        dispatch.append(
            f"if (x.scalar_type() == {scalar} && threads == {threads}) "
            f"rc = {name}(unroll, cache, op, x.data_ptr(), out.data_ptr(), nvec, s);"
        )
    binding = workdir / "binding.cpp"
    binding.write_text(BINDING_TU.format(declarations="\n".join(declarations), dispatch="\n  ".join(dispatch)))
    return load(
        name="forward_structure_probe",
        sources=[str(binding), *sources],
        extra_include_paths=[str(ROOT / "csrc/kernels")],
        extra_cuda_cflags=["-O3"],
        build_directory=str(workdir),
        verbose=False,
    )


def median_ms(calls: dict[str, Callable[[], object]], rounds: int, reps: int = 8) -> dict[str, float]:
    """Each call's median time over `rounds` rounds, the calls interleaved within a round so that
    clock and thermal drift falls on all of them alike. A sample is `reps` calls back to back
    between two events: the host runs ahead, and its time per call drops out."""
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    samples: dict[str, list[float]] = {k: [] for k in calls}
    for fn in calls.values():  # warm-up
        fn()
    torch.cuda.synchronize()
    for _ in range(rounds):
        for key, fn in calls.items():
            start.record()
            for _ in range(reps):
                fn()
            end.record()
            end.synchronize()
            samples[key].append(start.elapsed_time(end) / reps)
    return {k: statistics.median(v) for k, v in samples.items()}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", default="67108864,268435456")
    p.add_argument("--rounds", type=int, default=25)
    p.add_argument("--out", default=str(ROOT / "out/forward_structure"))
    args = p.parse_args()
    import torch_mish  # noqa: F401 - registers torch.ops.mish

    out_dir = Path(args.out)
    ext = build(out_dir / "build")
    rows = []
    for dtype, (_, torch_dtype) in DTYPES.items():
        for n in (int(s) for s in args.sizes.split(",")):
            x = torch.randn(n, device="cuda", dtype=torch_dtype)
            y = torch.empty_like(x)
            ref = torch.nn.functional.mish(x.double())
            calls: dict[str, Callable[[], object]] = {
                "ATen relu": lambda x=x: torch.relu(x),
                "torch_mish kernel": lambda x=x: torch.ops.mish.mish(x),
                "clone": lambda x=x: x.clone(),
            }
            for threads, unroll, cache, op in itertools.product(THREADS, UNROLLS, CACHES, OPS):
                if op == 3 and dtype == "float32":
                    continue
                key = f"{threads}/{unroll}/{cache}/{op}"
                calls[key] = lambda x=x, y=y, v=(threads, unroll, cache, op): ext.run(x, y, *v)
                if op >= 2:  # the probe's Mish must be Mish
                    ext.run(x, y, threads, unroll, cache, op)
                    atol, rtol = (1e-6, 1e-5) if dtype == "float32" else (1e-3, 8e-3)
                    assert torch.allclose(y.double(), ref, atol=atol, rtol=rtol), key
            times = median_ms(calls, args.rounds)
            relu = times["ATen relu"]
            for key, ms in times.items():
                row = {"dtype": dtype, "elements": n, "variant": key, "ms": round(ms, 5), "over_aten_relu": ms / relu}
                if "/" in key:
                    threads, unroll, cache, op = (int(v) for v in key.split("/"))
                    same_relu = times[f"{threads}/{unroll}/{cache}/1"]
                    row.update(
                        threads=threads, unroll=unroll, cache=CACHES[cache], op=OPS[op], over_same_relu=ms / same_relu
                    )
                rows.append(row)
            del x, y, ref
            torch.cuda.empty_cache()
            print(
                f"{dtype} {n}: ATen relu {relu:.4f} ms, torch_mish {times['torch_mish kernel'] / relu:.3f}x", flush=True
            )

    (out_dir / "forward_structure.json").write_text(json.dumps(rows, indent=1))
    lines = [f"# forward structure probe ({torch.cuda.get_device_name(0)}, torch {torch.__version__})", ""]
    for dtype in DTYPES:
        for n in sorted({r["elements"] for r in rows}):
            sel = [r for r in rows if r["dtype"] == dtype and r["elements"] == n]
            lines += [
                f"## {dtype}, {n} elements",
                "",
                "| variant | ms | / ATen relu | / same-structure relu |",
                "| --- | --- | --- | --- |",
            ]
            named = [r for r in sel if "op" not in r]
            ops = sorted((r for r in sel if "op" in r), key=lambda r: (r["op"], r["ms"]))
            for r in named + ops:
                label = (
                    r["variant"]
                    if "op" not in r
                    else f"{r['op']}, {r['threads']} threads, unroll {r['unroll']}, {r['cache']}"
                )
                same = f"{r['over_same_relu']:.3f}" if "over_same_relu" in r else ""
                lines.append(f"| {label} | {r['ms']:.4f} | {r['over_aten_relu']:.3f} | {same} |")
            lines.append("")
    (out_dir / "forward_structure.md").write_text("\n".join(lines))
    print(f"wrote {out_dir / 'forward_structure.md'}")


if __name__ == "__main__":
    main()
