"""Whole-detector inference with each activation on each PyTorch deploy path.

    python benchmarks/bench_inference.py [--models YOLOv4CSP] [--dtypes fp16,bf16] [--batches 1,16]
        [--paths eager,compile,max-autotune,cudagraphs,aoti-python,aoti-cpp] [--iters 50] [--image-size 640]

Writes benchmarks/results/inference.{csv,md,env.json} and plots/inference.png (--out-name changes the stem).

Models: YOLOv4CSP (benchmarks/yolov4_csp.py), or darknet cfgs through torch_mish.darknet.Darknet when that
module exists ("darknet:yolov4-csp", "darknet:yolov4x-mish"). Each model is built once per
activation (Mish modules swapped for the activation), put in eval mode, conv-BN folded as a deployer
would (every Conv2d followed by its BatchNorm2d becomes one Conv2d with a bias), converted to the
dtype (weights and input, channels_last) and run under torch.no_grad().

Paths: eager; torch.compile (default, and mode="max-autotune", which also captures CUDA graphs);
cudagraphs = torch.compile(mode="reduce-overhead"); aoti-python = torch.export ->
aoti_compile_and_package -> torch_mish.aoti.load_package; aoti-cpp = the same package run by the C++ runner
(examples/aoti/runner.cpp, no Python), which loads torch_mish's op library first. torch_mish.Mish
runs as shipped: Inductor fuses the op's decomposition (torch_mish/_inductor.py) on every compiled
path. "torch_mish.Mish [kernel]" (AOTInductor, --kernel-batches) keeps torch_mish's CUDA kernel as an
extern call instead (TORCH_MISH_INDUCTOR_DECOMPOSE=0).

Method: one process per (model, activation, dtype, batch) group. All groups compile in parallel
(CPU-bound), then wait at a barrier; after it, the groups are timed one at a time per GPU. With
several GPUs each (model, dtype, batch) cell is given one GPU, so the activations compared in a cell
ran on the same chip, and the GPUs time their cells side by side. Each path: warm-up calls, then
--iters calls back to back, each between two CUDA events; median, 10th and 90th percentile. Peak
memory: the weights, plus what the path keeps allocated beyond its own copy of the weights
(CUDA-graph pools), plus the largest allocation above that during a timed call (PyTorch's caching
allocator; for the C++ runner its own allocator statistics). err_vs_eager: relative L2 error of the
outputs against the eager model.
"""

from __future__ import annotations

import argparse
import atexit
import copy
import faulthandler
import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(BENCH))

# Kernels listed per profiled group: enough to pair one activation's kernels with another's (the 12
# listed before left a LeakyReLU model's second SPP max-pool kernel out).
PROFILE_KERNELS = 40
ALL_PATHS = ("eager", "compile", "max-autotune", "cudagraphs", "aoti-python", "aoti-cpp")
ALL_ACTIVATIONS = ("torch_mish.Mish", "nn.Mish", "composed", "LeakyReLU(0.1)", "SiLU")
COLUMNS = ("model", "activation", "path", "dtype", "batch", "image_size", "ms_median", "ms_p10", "ms_p90", "peak_gib")
DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32}
GIB = 2**30


class ComposedMish(nn.Module):
    """The hand-written Mish of YOLO code bases."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.tanh(F.softplus(x))


def activation_factory(name: str) -> Callable[[], nn.Module]:
    import torch_mish

    factories: dict[str, Callable[[], nn.Module]] = {
        "torch_mish.Mish": torch_mish.Mish,
        "nn.Mish": nn.Mish,
        "composed": ComposedMish,
        "LeakyReLU(0.1)": lambda: nn.LeakyReLU(0.1, inplace=True),
        "SiLU": lambda: nn.SiLU(inplace=True),
    }
    return factories[name]


# ------------------------------------------------------------------------------------------ models


def darknet_available() -> bool:
    try:
        from torch_mish.darknet import Darknet  # noqa: F401
    except ImportError:
        return False
    return True


def swap_mish(model: nn.Module, factory: Callable[[], nn.Module]) -> int:
    """Replace every Mish module (torch_mish.Mish, nn.Mish) with factory(); returns how many."""
    import torch_mish

    count = 0
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, (torch_mish.Mish, nn.Mish)):
                setattr(parent, name, factory())
                count += 1
    return count


def build_model(name: str, activation: str, width: float, depth: float) -> nn.Module:
    factory = activation_factory(activation)
    torch.manual_seed(0)
    if name == "YOLOv4CSP":
        from yolov4_csp import YOLOv4CSP

        return YOLOv4CSP(width=width, depth=depth, act=factory)
    if name == "tiny":  # a few Conv-BN-activation blocks with a residual: dry runs of this script on a CPU
        from yolov4_csp import Bottleneck, ConvBnAct

        return nn.Sequential(
            ConvBnAct(3, 8, 3, 2, act=factory), Bottleneck(8, True, factory), ConvBnAct(8, 16, 3, 2, act=factory)
        )
    if name.startswith("darknet:"):
        from torch_mish.darknet import Darknet, packaged_cfg

        model = Darknet(packaged_cfg(name.split(":", 1)[1]))
        swap_mish(model, factory)
        return model
    raise ValueError(f"unknown model {name}")


def fold_conv_bn(model: nn.Module) -> tuple[int, int]:
    """Fold each BatchNorm2d into the Conv2d that feeds it, in place (eval mode); keeps the module tree,
    so activations stay modules. Two patterns: a Conv2d then a BatchNorm2d among an nn.Sequential's
    children, and a module whose `conv` and `bn` children run in that order (Conv-BN-Act blocks; the
    caller checks the folded model's output). Returns (folded, BatchNorm2d left)."""
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    folded = 0
    for module in list(model.modules()):
        if isinstance(module, nn.Sequential):
            names = list(module._modules)
            for a, b in zip(names, names[1:], strict=False):
                conv, bn = module._modules[a], module._modules[b]
                if (
                    isinstance(conv, nn.Conv2d)
                    and isinstance(bn, nn.BatchNorm2d)
                    and bn.num_features == conv.out_channels
                ):
                    module._modules[a] = fuse_conv_bn_eval(conv, bn)
                    module._modules[b] = nn.Identity()
                    folded += 1
        conv, bn = getattr(module, "conv", None), getattr(module, "bn", None)
        if isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d) and bn.num_features == conv.out_channels:
            module.conv = fuse_conv_bn_eval(conv, bn)
            module.bn = nn.Identity()
            folded += 1
    left = sum(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    return folded, left


def extract_model_library(pkg: Path) -> Path:
    """The model library (.so, its kernels beside it) of an AOTInductor package, extracted next to it."""
    import zipfile

    dest = pkg.with_suffix("")
    with zipfile.ZipFile(pkg) as zf:
        zf.extractall(dest)
    return sorted(dest.rglob("*.so"))[0]


def outputs_list(out: Any) -> list[torch.Tensor]:
    if isinstance(out, torch.Tensor):
        return [out]
    if isinstance(out, (list, tuple)):
        return [t for o in out for t in outputs_list(o)]
    if isinstance(out, dict):
        return [t for o in out.values() for t in outputs_list(o)]
    raise TypeError(f"unexpected model output {type(out)}")


def comparable(t: torch.Tensor) -> torch.Tensor:
    """What err_vs_eager compares. Darknet's decoded detections (N, boxes, 5 + classes): the
    objectness and class scores; the box sizes are exp() of the raw output times the anchor, which
    turns a float16 rounding difference into a large relative one. Other outputs: all of it."""
    return t[..., 4:] if t.dim() == 3 and t.shape[-1] > 5 else t


def rel_err(out: Any, ref: Sequence[torch.Tensor]) -> float:
    """Relative L2 error over the elements finite in both (inf where the non-finite ones differ)."""
    num = den = 0.0
    for out_t, ref_t in zip(outputs_list(out), ref, strict=True):
        o, r = comparable(out_t).float().to(ref_t.device), comparable(ref_t).float()
        if not torch.equal(o.isfinite(), r.isfinite()):
            return float("inf")
        keep = r.isfinite()
        num += float((o[keep] - r[keep]).norm() ** 2)
        den += float(r[keep].norm() ** 2)
    return (num / max(den, 1e-30)) ** 0.5


def calibrate_batchnorm(model: nn.Module, device: str, passes: int = 2) -> None:
    """Give random weights the BatchNorm statistics a trained model has for its own activations
    (running mean/var = the average of a few batches' statistics), so that activations keep their
    scale through the network in float16 as in a real detector."""
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    for bn in bns:
        bn.reset_running_stats()
        bn.momentum = None  # cumulative average
    model.train()
    gen = torch.Generator().manual_seed(2)
    with torch.no_grad():
        for _ in range(passes):
            model(torch.randn(2, 3, 256, 256, generator=gen).to(device))
    model.eval()


# ------------------------------------------------------------------------------------------ timing


def sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def allocated(device: str) -> int:
    return torch.cuda.memory_allocated() if device == "cuda" else 0


# ------------------------------------------------------------------------------------------ a group


class Group:
    """One (model, activation, dtype, batch): builds and compiles every path, then times them."""

    def __init__(self, spec: dict[str, Any], workdir: Path) -> None:
        self.spec = spec
        self.workdir = workdir
        self.device: str = spec["device"]
        self.dtype = DTYPES[spec["dtype"]]
        self.gid: str = spec["id"]
        self.rows: list[dict[str, Any]] = []
        self.notes: list[str] = []
        self.prepared: list[tuple[str, str, Callable[[], Any], dict[str, Any]]] = []  # (activation, path, fn, info)
        self.packages: list[tuple[str, Path]] = []

    def log(self, msg: str) -> None:
        print(f"[{self.gid}] {msg}", flush=True)

    def build(self) -> None:
        s = self.spec
        model = build_model(s["model"], s["activation"], s["width"], s["depth"]).eval()
        probe = torch.randn(1, 3, 128, 128, device=self.device)
        model = model.to(self.device)
        calibrate_batchnorm(model, self.device)
        tf32 = torch.backends.cudnn.allow_tf32
        torch.backends.cudnn.allow_tf32 = False  # compare in true float32
        try:
            with torch.no_grad():
                before = outputs_list(model(probe))
                folded, left = fold_conv_bn(model)
                err = rel_err(model(probe), before)
        finally:
            torch.backends.cudnn.allow_tf32 = tf32
        if err > 1e-3:
            raise RuntimeError(f"conv-BN folding changed the output (rel err {err:.1e})")
        self.notes.append(f"conv-BN folded: {folded}, BatchNorm2d left: {left}, fold rel err {err:.1e}")
        memory_format = torch.channels_last if self.device == "cuda" else torch.contiguous_format
        self.model = model.to(dtype=self.dtype, memory_format=memory_format)
        self.weights_bytes = sum(t.numel() * t.element_size() for t in [*model.parameters(), *model.buffers()])
        gen = torch.Generator().manual_seed(1)
        size = s["image_size"]
        x = torch.randn(s["batch"], 3, size, size, generator=gen).to(self.dtype)
        self.x_nchw = x
        self.x = x.to(self.device).contiguous(memory_format=memory_format)
        with torch.no_grad():
            self.ref = [t.detach().clone() for t in outputs_list(self.model(self.x))]
        sync(self.device)

    def _prepare(self, activation: str, path: str, make: Callable[[], Callable[[], Any]], **info: Any) -> None:
        """Build one path's callable, call it until compiled and warm, check it against eager. A path
        still compiling at the group's compile deadline is interrupted (SIGALRM) and reported."""
        left = self.spec.get("compile_deadline", float("inf")) - time.time()
        if left < 5:
            self.rows.append(self._row(activation, path, error="skipped: compile deadline"))
            return

        def on_alarm(signum: int, frame: object) -> None:
            raise TimeoutError("compile deadline")

        before = allocated(self.device)
        t0 = time.perf_counter()
        previous = signal.signal(signal.SIGALRM, on_alarm)
        if left != float("inf"):
            signal.alarm(max(1, int(left)))
        try:
            fn = make()
            with torch.no_grad():
                out = None
                for _ in range(3):  # compile; CUDA graphs record on a later call
                    out = fn()
            sync(self.device)
            err = rel_err(out, self.ref)
        except Exception as exc:  # a path that fails is a result, not the end of the benchmark
            self.log(f"{activation} {path}: FAILED {type(exc).__name__}: {exc}")
            self.rows.append(self._row(activation, path, error=f"{type(exc).__name__}: {str(exc)[:300]}"))
            return
        finally:
            signal.alarm(0)
            signal.signal(signal.SIGALRM, previous)
        info.update(prepare_s=round(time.perf_counter() - t0, 1), err_vs_eager=err)
        info["retained_bytes"] = allocated(self.device) - before
        self.prepared.append((activation, path, fn, info))
        self.log(f"{activation} {path}: ready in {info['prepare_s']} s, err vs eager {err:.1e}")
        if path == "max-autotune":  # how the search compiled its choices: in the worker pool or not
            from torch._dynamo.utils import counters

            tuned = {k: v for k, v in counters["inductor"].items() if k.startswith("select_algorithm")}
            self.log(f"{activation} {path}: Inductor counters {tuned}")

    def compile_all(self) -> None:
        s = self.spec
        act, x = s["activation"], self.x
        paths = s["paths"]
        no_grad = torch.no_grad

        def call(m: Callable[..., Any]) -> Callable[[], Any]:
            def fn() -> Any:
                with no_grad():
                    return m(x)

            return fn

        def compiled(mode: str | None) -> Callable[[], Any]:
            return call(torch.compile(copy.deepcopy(self.model), mode=mode))

        def cudagraphed(mode: str) -> Callable[[], Any]:
            m = torch.compile(copy.deepcopy(self.model), mode=mode)

            def fn() -> Any:
                torch.compiler.cudagraph_mark_step_begin()
                with no_grad():
                    return m(x)

            return fn

        if "eager" in paths:
            self._prepare(act, "eager", lambda: call(self.model))
        if "compile" in paths:
            self._prepare(act, "compile", lambda: compiled(None))
        if "cudagraphs" in paths and self.device == "cuda":
            self._prepare(act, "cudagraphs", lambda: cudagraphed("reduce-overhead"))
        if "aoti-python" in paths or "aoti-cpp" in paths:
            for variant in s["aoti_variants"]:
                label = f"{act} [{variant}]" if variant else act
                self._prepare(label, "aoti-python", lambda v=variant: self._aoti(v))
        if "max-autotune" in paths and self.device == "cuda":  # last: the longest compile
            if os.environ.get("BENCH_AWAIT_COMPILE_POOL") == "1":
                self.log(await_compile_pool())
            self._prepare(act, "max-autotune", lambda: cudagraphed("max-autotune"))

    def _aoti(self, variant: str) -> Callable[[], Any]:
        import torch_mish._inductor as mi
        import torch_mish.aoti

        pkg = self.workdir / "packages" / f"{self.gid}{'_' + variant if variant else ''}.pt2"
        pkg.parent.mkdir(parents=True, exist_ok=True)
        with torch.no_grad(), mi.lowered(variant != "kernel"):
            ep = torch.export.export(self.model, (self.x,))
            torch._inductor.aoti_compile_and_package(ep, package_path=str(pkg))
        target = pkg
        if self.spec.get("aoti_safe_load"):
            # Load and run once in a throwaway process first: a crash there ends that process, not
            # this one. If the package loader crashes, try the model library without it.
            problem = self._try_load(pkg)
            if problem:
                self.notes.append(f"{variant or 'aoti'}: the package loader failed ({problem}); trying the bare .so")
                target = extract_model_library(pkg)
                problem = self._try_load(target)
                if problem:
                    raise RuntimeError(f"both the package and its .so failed to load and run: {problem}")
        self.packages.append((variant, target))
        x = self.x
        if target.suffix == ".so":
            runner = torch._C._aoti.AOTIModelContainerRunnerCuda(str(target), 1, "cuda", str(target.parent))

            def run_so() -> Any:
                return runner.run([x])

            return run_so
        loaded = torch_mish.aoti.load_package(pkg)

        def fn() -> Any:
            with torch.no_grad():
                return loaded(x)

        return fn

    def _try_load(self, target: Path) -> str:
        """'' when target (a .pt2 package or a bare .so) loads and runs once in a fresh process."""
        code = (
            "import sys, torch, torch_mish.aoti\n"
            "p, shape, dtype = sys.argv[1], [int(v) for v in sys.argv[2].split(',')], getattr(torch, sys.argv[3])\n"
            "x = torch.randn(shape).to(dtype).cuda().contiguous(memory_format=torch.channels_last)\n"
            "if p.endswith('.so'):\n"
            "    r = torch._C._aoti.AOTIModelContainerRunnerCuda(p, 1, 'cuda', p.rsplit('/', 1)[0])\n"
            "    r.run([x])\n"
            "else:\n"
            "    torch_mish.aoti.load_package(p)(x)\n"
            "torch.cuda.synchronize()\n"
        )
        dtype = str(self.dtype).split(".")[1]
        args = [sys.executable, "-c", code, str(target), ",".join(map(str, self.x.shape)), dtype]
        proc = subprocess.run(args, capture_output=True, text=True, timeout=300)
        return "" if proc.returncode == 0 else f"exit {proc.returncode}: {proc.stderr[-200:]}"

    def time_all(self) -> None:
        from torch_mish._timing import time_calls

        s = self.spec
        for activation, path, fn, info in self.prepared:
            if self.device == "cuda":
                torch.cuda.reset_peak_memory_stats()
            base = allocated(self.device)
            times = time_calls(fn, self.device, warmup=s["warmup"], iters=s["iters"])
            transient = (torch.cuda.max_memory_allocated() - base) if self.device == "cuda" else 0
            extra = max(0, info["retained_bytes"] - self.weights_bytes) if path != "eager" else 0
            peak = self.weights_bytes + extra + transient
            self.rows.append(self._row(activation, path, times=times, peak=peak, **info))
        if "aoti-cpp" in s["paths"] and self.packages and self.device == "cuda":
            self._time_cpp()

    def _time_cpp(self) -> None:
        """Every package of the group in one run of the C++ runner (one process start, one libtorch load)."""
        s = self.spec
        runner = Path(s["runner"])
        act = s["activation"]
        if not runner.exists():
            self.notes.append(f"aoti-cpp: no runner at {runner}")
            return
        inp = self.workdir / f"{self.gid}.in.bin"
        inp.write_bytes(self.x_nchw.contiguous().view(torch.uint8).numpy().tobytes())
        out = self.workdir / f"{self.gid}.out.bin"
        libs = sorted(str(p) for p in (ROOT / "torch_mish").glob("_C*.so"))
        cmd = [str(runner), *[a for lib in libs for a in ("--lib", lib)]]
        cmd += [a for _, pkg in self.packages for a in ("--package", str(pkg))]
        cmd += ["--shape", ",".join(map(str, self.x.shape)), "--dtype", s["dtype"], "--channels-last"]
        cmd += ["--input", str(inp), "--output", str(out), "--warmup", str(s["warmup"]), "--iters", str(s["iters"])]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
        results = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
        shown = " ".join(Path(c).name if c.startswith("/") else c for c in cmd)
        for i, (variant, _) in enumerate(self.packages):
            label = f"{act} [{variant}]" if variant else act
            if i >= len(results):
                self.rows.append(self._row(label, "aoti-cpp", error=f"rc {proc.returncode}: {proc.stderr[-300:]}"))
                continue
            res = results[i]
            out_i = out if len(self.packages) == 1 else Path(f"{out}.{i}")
            flat = torch.frombuffer(bytearray(out_i.read_bytes()), dtype=self.dtype)
            pieces, offset = [], 0
            for r in self.ref:
                pieces.append(flat[offset : offset + r.numel()].reshape(r.shape))
                offset += r.numel()
            err = rel_err(pieces, [r.cpu().contiguous() for r in self.ref])
            row = self._row(label, "aoti-cpp", peak=self.weights_bytes + res["transient_peak_bytes"], err_vs_eager=err)
            row.update(ms_median=res["ms_median"], ms_p10=res["ms_p10"], ms_p90=res["ms_p90"], prepare_s=res["load_s"])
            row["command"] = shown
            self.rows.append(row)

    def _row(
        self, activation: str, path: str, times: Sequence[float] | None = None, peak: int | None = None, **info: Any
    ) -> dict[str, Any]:
        from torch_mish._timing import percentile

        s = self.spec
        row: dict[str, Any] = {
            "model": s["model"],
            "activation": activation,
            "path": path,
            "dtype": s["dtype"],
            "batch": s["batch"],
            "image_size": s["image_size"],
            "ms_median": round(percentile(times, 50), 4) if times else None,
            "ms_p10": round(percentile(times, 10), 4) if times else None,
            "ms_p90": round(percentile(times, 90), 4) if times else None,
            "peak_gib": round(peak / GIB, 3) if peak is not None else None,
            "gpu": s.get("gpu", 0),
        }
        row.update({k: v for k, v in info.items() if k != "retained_bytes"})
        if isinstance(row.get("err_vs_eager"), float):
            row["err_vs_eager"] = float(f"{row['err_vs_eager']:.2e}")
        return row

    def profile(self) -> str:
        """Kernel table per path: GPU time per call by kernel, from torch.profiler."""
        from torch.profiler import ProfilerActivity, profile

        lines = []
        for activation, path, fn, _ in self.prepared:
            with profile(activities=[ProfilerActivity.CUDA]) as prof:
                for _ in range(5):
                    fn()
                torch.cuda.synchronize()
            events = [e for e in prof.key_averages() if e.device_type == torch.autograd.DeviceType.CUDA]
            total = sum(e.self_device_time_total for e in events) / 5 / 1e3
            lines.append(f"## {self.gid} {activation} {path}: GPU kernel time {total:.3f} ms per call")
            kinds: dict[str, list[float]] = {}
            for e in events:
                kind = kinds.setdefault(kernel_kind(e.key), [0.0, 0])
                kind[0] += e.self_device_time_total / 5 / 1e3
                kind[1] += e.count // 5
            lines.append("  by kind: " + ", ".join(f"{k} {t:.3f} ms ({n})" for k, (t, n) in sorted(kinds.items())))
            for e in sorted(events, key=lambda e: -e.self_device_time_total)[:PROFILE_KERNELS]:
                lines.append(f"  {e.self_device_time_total / 5 / 1e3:8.3f} ms  {e.count // 5:4d}x  {e.key[:110]}")
        return "\n".join(lines) + "\n"


def kernel_kind(name: str) -> str:
    """A profile's kernel by what it does. Inductor names a Triton kernel after the FX nodes it was
    built from, which need not include the activation it carries (a convolution template whose
    epilogue is a realized Mish is `triton_tem_fused_convolution_N`), so Triton kernels are split by
    kind of kernel, which compares between activations, and only eager kernels by name."""
    if name.startswith("triton_tem"):
        return "Triton conv/GEMM template"
    if name.startswith("triton_"):
        return "Triton pointwise/reduction"
    if re.search(r"xmma|nvjet|cutlass|gemm|cudnn|conv", name, re.IGNORECASE):
        return "cuDNN/cuBLAS conv/GEMM"
    return "activation kernel" if re.search(r"mish|leaky_relu|silu|softplus|tanh", name, re.IGNORECASE) else "other"


def await_compile_pool() -> str:
    """Start Inductor's compile worker pool and wait until it answers. The autotuner hands a Triton
    choice to the pool only if a non-blocking readiness check says yes at that moment; otherwise the
    choice is compiled later, serially, in this process. Waiting changes compile time, not kernels."""
    from torch._inductor.async_compile import AsyncCompile

    t0 = time.perf_counter()
    if hasattr(AsyncCompile, "wait_process_pool_ready"):  # newer torch
        ready = AsyncCompile.wait_process_pool_ready()
    else:
        AsyncCompile.use_process_pool()  # submits the readiness job
        future = getattr(AsyncCompile, "_ready_future", None)
        if future is not None:
            future.result(timeout=120)
        ready = AsyncCompile.use_process_pool()
    return f"compile pool ready={ready} after {time.perf_counter() - t0:.1f} s"


def run_group(spec: dict[str, Any], workdir: Path) -> None:
    if dump_s := float(os.environ.get("BENCH_STACK_DUMP_S", "0")):
        faulthandler.dump_traceback_later(dump_s, repeat=True)  # where a long compile spends its time
    g = Group(spec, workdir)
    rows_file = workdir / f"rows.{g.gid}.json"
    try:
        g.build()
        g.compile_all()
    except Exception as exc:
        g.notes.append(f"build/compile failed: {type(exc).__name__}: {exc}")
        g.log(g.notes[-1])
    (workdir / f"ready.{g.gid}").write_text("1")
    go = workdir / f"go.{g.gid}"
    while not go.exists():
        time.sleep(0.05)
    try:
        if hasattr(g, "model"):
            g.time_all()
            if spec.get("profile") and spec["device"] == "cuda":
                (workdir / f"profile.{g.gid}.txt").write_text(g.profile())
    except Exception as exc:
        g.notes.append(f"timing failed: {type(exc).__name__}: {exc}")
        g.log(g.notes[-1])
    rows_file.write_text(json.dumps({"rows": g.rows, "notes": g.notes}))


# ------------------------------------------------------------------------------------------ driver


def group_specs(args: argparse.Namespace) -> list[dict[str, Any]]:
    specs: list[dict[str, Any]] = []
    common = {
        "image_size": args.image_size,
        "width": args.width,
        "depth": args.depth,
        "device": args.device,
        "warmup": args.warmup,
        "iters": args.iters,
        "runner": str(Path(args.runner).resolve()),
        "aoti_safe_load": args.aoti_safe_load,
    }
    models = [m for m in args.models.split(",") if m]
    if "auto" in models:
        models = ["darknet:yolov4-csp", "darknet:yolov4x-mish"] if darknet_available() else ["YOLOv4CSP"]
    mat_acts = set(args.max_autotune_activations.split(","))
    mat_batches = {int(b) for b in args.max_autotune_batches.split(",")}
    aoti_acts = set(args.aoti_activations.split(",")) if args.aoti_activations != "all" else set(ALL_ACTIVATIONS)
    kernel_batches = {int(b) for b in args.kernel_batches.split(",") if b}
    for model in models:
        for dtype in args.dtypes.split(","):
            for batch in (int(b) for b in args.batches.split(",")):
                for act in args.activations.split(","):
                    paths = [p for p in args.paths.split(",") if p]
                    if "max-autotune" in paths and (
                        act not in mat_acts
                        or batch not in mat_batches
                        or dtype not in args.max_autotune_dtypes.split(",")
                    ):
                        paths.remove("max-autotune")
                    if act not in aoti_acts:
                        paths = [p for p in paths if not p.startswith("aoti")]
                    gid = f"{model.replace(':', '_')}_{act.split('(')[0].replace('.', '_')}_{dtype}_b{batch}"
                    base = {"id": gid, "model": model, "activation": act, "dtype": dtype, "batch": batch, **common}
                    specs.append({**base, "paths": paths, "aoti_variants": [""]})
                    aoti_paths = [p for p in paths if p.startswith("aoti")]
                    if act == "torch_mish.Mish" and batch in kernel_batches and aoti_paths:
                        # the op kept as torch_mish's kernel: its own group, compiling in parallel
                        specs.append({**base, "id": gid + "_kernel", "paths": aoti_paths, "aoti_variants": ["kernel"]})
    # a cell's groups share a GPU, so its ratios compare runs on one chip; the cells go round the GPUs
    # in (model, batch, dtype) order, so that each GPU gets batch-1 and batch-16 cells alike
    cells = sorted({(s["model"], s["batch"], s["dtype"]) for s in specs}, key=lambda c: (models.index(c[0]), c[1:]))
    for spec in specs:
        spec["gpu"] = cells.index((spec["model"], spec["batch"], spec["dtype"])) % max(1, args.gpus)
    for spec in specs:
        spec["profile"] = (
            args.profile
            and spec["batch"] in {int(b) for b in args.profile_batches.split(",")}
            and spec["dtype"] in args.profile_dtypes.split(",")
        )
    return specs


_GROUPS: set[subprocess.Popen[bytes]] = set()


def kill_groups(*_: object) -> None:
    """End every group process with its compile workers (none outlives the benchmark)."""
    for proc in list(_GROUPS):
        if proc.poll() is None:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def orchestrate(args: argparse.Namespace) -> tuple[list[dict[str, Any]], list[str]]:  # noqa: PLR0912
    workdir = Path(args.workdir).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    for f in workdir.glob("*.*"):
        if f.name.split(".")[0] in ("ready", "go", "rows", "profile"):
            f.unlink()
    # each group process sees only its GPU (as device 0); CPU runs are timed one group at a time
    available = torch.cuda.device_count() if args.device == "cuda" else 1
    args.gpus = min(args.gpus or available, available)
    if args.gpus < 1:
        raise SystemExit("bench_inference: no CUDA device visible (--device cpu for a dry run)")
    listed = os.environ.get("CUDA_VISIBLE_DEVICES")
    visible = listed.split(",")[: args.gpus] if listed else [str(i) for i in range(args.gpus)]
    if args.device != "cuda":
        visible = []  # CPU groups run as they are
    specs = group_specs(args)
    deadline = time.monotonic() + args.deadline_s
    for spec in specs:  # groups stop compiling here (wall clock: they are other processes)
        spec["compile_deadline"] = time.time() + args.deadline_s - args.timing_reserve_s
    env = {**os.environ, "TORCHINDUCTOR_COMPILE_THREADS": str(args.compile_threads), "PYTHONUNBUFFERED": "1"}
    rows: list[dict[str, Any]] = []
    notes: list[str] = []
    for start in range(0, len(specs), args.jobs):  # waves of at most --jobs groups
        wave = specs[start : start + args.jobs]
        procs = {}
        for spec in wave:
            log = open(workdir / f"log.{spec['id']}.txt", "w")  # noqa: SIM115 - closed with the process
            cmd = [sys.executable, __file__, "--group", json.dumps(spec), "--workdir", str(workdir)]
            group_env = {**env, "CUDA_VISIBLE_DEVICES": str(visible[spec["gpu"]])} if visible else env
            proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=group_env, start_new_session=True)
            procs[spec["id"]] = (proc, log)
            _GROUPS.add(proc)
        t0 = time.monotonic()
        # barrier: every group compiled (or gone), or the compile deadline
        while time.monotonic() < deadline - args.timing_reserve_s + 20:  # + grace to finish the interrupted path
            pending = [g for g, (p, _) in procs.items() if p.poll() is None and not (workdir / f"ready.{g}").exists()]
            if not pending:
                break
            time.sleep(0.2)
        print(f"wave {start // args.jobs}: compiled in {time.monotonic() - t0:.0f} s", flush=True)
        if args.timing_after:  # other GPU work (a probe, tests) must end before anything is timed
            while not Path(args.timing_after).exists() and time.monotonic() < deadline - args.timing_reserve_s + 60:
                time.sleep(0.5)
        by_gpu: dict[int, list[str]] = {}
        for spec in wave:
            by_gpu.setdefault(spec["gpu"], []).append(spec["id"])
        with ThreadPoolExecutor(max_workers=max(1, len(by_gpu))) as pool:  # the GPUs time side by side
            futures = [pool.submit(time_groups, gids, procs, workdir, deadline) for _, gids in sorted(by_gpu.items())]
            for future in futures:
                gpu_rows, gpu_notes = future.result()
                rows += gpu_rows
                notes += gpu_notes
        print(f"wave {start // args.jobs}: timed by {time.monotonic() - t0:.0f} s", flush=True)
    return rows, notes


def time_groups(
    gids: list[str], procs: dict[str, tuple[subprocess.Popen[bytes], Any]], workdir: Path, deadline: float
) -> tuple[list[dict[str, Any]], list[str]]:
    """Let one GPU's compiled groups time themselves, one after the other; collect their rows."""
    rows: list[dict[str, Any]] = []
    notes: list[str] = []
    for gid in gids:
        proc, log = procs[gid]
        if proc.poll() is None and not (workdir / f"ready.{gid}").exists():
            os.killpg(proc.pid, signal.SIGKILL)
            notes.append(f"{gid}: not compiled by the deadline, skipped")
        elif proc.poll() is None:
            (workdir / f"go.{gid}").write_text("1")
            try:
                proc.wait(timeout=max(10.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                notes.append(f"{gid}: timing ran past the deadline, killed")
        log.close()
        result = workdir / f"rows.{gid}.json"
        if result.exists():
            data = json.loads(result.read_text())
            rows += data["rows"]
            notes += [f"{gid}: {n}" for n in data["notes"]]
        elif proc.returncode not in (0, None):
            notes.append(f"{gid}: process ended with {proc.returncode} (log.{gid}.txt)")
    return rows, notes


def markdown(rows: list[dict[str, Any]], notes: list[str], args: argparse.Namespace) -> str:
    lines = [
        f"- method: one process per group; groups compile in waves of up to --jobs at once (all at once by "
        f"default), then each wave is timed one group at a time per GPU (a cell's groups on one GPU, column gpu); "
        f"{args.warmup} warm-up calls, {args.iters} timed calls each between CUDA events; median, p10, p90",
        "- model: eval, conv-BN folded, weights and input in the dtype, channels_last, torch.no_grad()",
        "",
        "| model | activation | path | dtype | batch | ms median | p10-p90 | peak GiB | err vs eager | prepare s |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        if r.get("ms_median") is None:
            lines.append(
                f"| {r['model']} | {r['activation']} | {r['path']} | {r['dtype']} | {r['batch']} | failed: "
                f"{str(r.get('error', ''))[:80]} | | | | |"
            )
            continue
        lines.append(
            f"| {r['model']} | {r['activation']} | {r['path']} | {r['dtype']} | {r['batch']} | {r['ms_median']:.3f} "
            f"| {r['ms_p10']:.3f}-{r['ms_p90']:.3f} | {r['peak_gib']:.2f} | {r.get('err_vs_eager', '')} "
            f"| {r.get('prepare_s', '')} |"
        )
    lines += ["", "## Against the targets", "", *ratio_lines(rows), "", "## Notes", "", *[f"- {n}" for n in notes]]
    return "\n".join(lines)


def ratio_lines(rows: list[dict[str, Any]]) -> list[str]:
    """torch_mish rows over nn.Mish's and LeakyReLU's in the same (model, path, dtype, batch) cell."""
    index = {(r["model"], r["activation"], r["path"], r["dtype"], r["batch"]): r["ms_median"] for r in rows}
    out = [
        "| model | path | dtype | batch | torch_mish row | ms | / nn.Mish | / LeakyReLU | target |",
        "| --- " * 9 + "|",
    ]
    for (model, act, path, dtype, batch), ms in index.items():
        if not act.startswith("torch_mish.Mish") or ms is None:
            continue
        ref_mish = index.get((model, "nn.Mish", path, dtype, batch))
        leaky = index.get((model, "LeakyReLU(0.1)", path, dtype, batch))
        r1 = ms / ref_mish if ref_mish else None
        r2 = ms / leaky if leaky else None
        if path == "eager":
            ok = None if r1 is None else r1 <= 1.0
            spec = "≤ 1.00× nn.Mish"
        else:
            ok = None if r1 is None and r2 is None else (r1 is None or r1 <= 1.02) and (r2 is None or r2 <= 1.05)
            spec = "≤ 1.02× / ≤ 1.05×"
        target = "n/a" if ok is None else "met" if ok else "missed"
        if act != "torch_mish.Mish":  # a variant measured for comparison, not what ships
            target = "variant, not the default"
        f1 = f"{r1:.3f}" if r1 else "-"
        f2 = f"{r2:.3f}" if r2 else "-"
        shown = target if act != "torch_mish.Mish" else f"{target} ({spec})"
        out.append(f"| {model} | {path} | {dtype} | {batch} | {act} | {ms:.3f} | {f1} | {f2} | {shown} |")
    return out


def plot_from_csv(out_name: str) -> None:
    """Redraw the plot from a results CSV (any machine): python benchmarks/bench_inference.py --plot-only"""
    from common import RESULTS

    plot(read_rows(RESULTS / f"{out_name}.csv"), plot_path(out_name))


def plot_path(out_name: str) -> Path:
    """Where a results table's plot goes: results/plots/<out-name>.png."""
    from common import RESULTS

    return RESULTS / "plots" / f"{out_name}.png"


def plot(rows: list[dict[str, Any]], path: Path) -> None:
    try:
        import matplotlib
    except ImportError:
        print("matplotlib is not installed: no plot")
        return

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cells = sorted({(r["model"], r["dtype"], r["batch"]) for r in rows if r.get("ms_median")})
    if not cells:
        return
    fig, axes = plt.subplots(len(cells), 1, figsize=(12, 3.2 * len(cells)), squeeze=False)
    acts = list(dict.fromkeys(r["activation"] for r in rows if r.get("ms_median")))
    paths = [p for p in ALL_PATHS if any(r["path"] == p and r.get("ms_median") for r in rows)]
    width = 0.8 / max(1, len(acts))
    for ax, (model, dtype, batch) in zip(axes[:, 0], cells, strict=True):
        for i, act in enumerate(acts):
            ys = []
            for p in paths:
                match = [
                    r["ms_median"]
                    for r in rows
                    if (r["model"], r["dtype"], r["batch"], r["activation"], r["path"]) == (model, dtype, batch, act, p)
                    and r.get("ms_median")
                ]
                ys.append(match[0] if match else 0.0)
            ax.bar([j + i * width for j in range(len(paths))], ys, width, label=act)
        ax.set_xticks([j + 0.4 - width / 2 for j in range(len(paths))], paths)
        ax.set_ylabel("ms per forward")
        ax.set_title(f"{model}, {dtype}, batch {batch}")
    axes[0, 0].legend(fontsize=7, ncol=4)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)


def make_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", default="auto", help="YOLOv4CSP, darknet:<cfg name>, tiny, or auto (darknet if present)")
    p.add_argument("--activations", default=",".join(ALL_ACTIVATIONS))
    p.add_argument("--paths", default=",".join(ALL_PATHS))
    p.add_argument("--dtypes", default="fp16,bf16")
    p.add_argument("--batches", default="1,16")
    p.add_argument("--image-size", type=int, default=640)
    p.add_argument("--width", type=float, default=1.0, help="YOLOv4CSP channel multiplier (tiny runs)")
    p.add_argument("--depth", type=float, default=1.0)
    p.add_argument("--iters", type=int, default=50)
    p.add_argument("--warmup", type=int, default=10)
    p.add_argument("--device", default="cuda")
    p.add_argument("--max-autotune-activations", default="torch_mish.Mish,nn.Mish,LeakyReLU(0.1)")
    p.add_argument("--max-autotune-batches", default="16")
    p.add_argument("--aoti-activations", default="all")
    p.add_argument("--max-autotune-dtypes", default="fp16,bf16")
    p.add_argument(
        "--kernel-batches",
        default="16",
        help="batches with a torch_mish.Mish [kernel] AOTInductor row (the op as an extern kernel); '' for none",
    )
    p.add_argument("--gpus", type=int, default=None, help="GPUs to spread the cells over (default: all visible)")
    p.add_argument("--aoti-safe-load", action="store_true", help="load each package in a throwaway process first")
    p.add_argument("--runner", default=str(ROOT / "out/aoti/aoti_runner"))
    p.add_argument("--jobs", type=int, default=64, help="groups compiling at once (a wave)")
    p.add_argument("--compile-threads", type=int, default=1, help="TORCHINDUCTOR_COMPILE_THREADS per group")
    p.add_argument("--deadline-s", type=float, default=540)
    p.add_argument("--timing-reserve-s", type=float, default=150, help="kept for the timing phase")
    p.add_argument("--timing-after", help="wait for this file to exist before timing anything")
    p.add_argument("--profile", action="store_true", help="kernel tables (profile.*.txt in --workdir)")
    p.add_argument("--profile-batches", default="16")
    p.add_argument("--profile-dtypes", default="fp16")
    p.add_argument("--workdir", default=str(ROOT / "out/inference"))
    p.add_argument("--out-name", default="inference")
    p.add_argument("--plot-only", action="store_true", help="redraw results/plots/<out-name>.png from its CSV")
    p.add_argument("--merge", help="RUN1,RUN2,...: write results/<out-name>.* from those runs' results")
    p.add_argument("--group", help=argparse.SUPPRESS)
    return p


def main() -> None:
    args = make_parser().parse_args()
    if args.plot_only:
        plot_from_csv(args.out_name)
        return
    if args.group:
        run_group(json.loads(args.group), Path(args.workdir))
        return
    if args.merge:
        merge(args.merge.split(","), args.out_name)
        return
    from common import RESULTS, write_table

    t0 = time.monotonic()
    atexit.register(kill_groups)
    signal.signal(signal.SIGTERM, lambda *_: (kill_groups(), sys.exit(143)))
    rows, notes = orchestrate(args)
    env = environment(args)
    env["wall_s"] = f"{time.monotonic() - t0:.0f}"
    write_table(args.out_name, rows, env, markdown(rows, notes, args))
    env_path = RESULTS / f"{args.out_name}.env.json"  # the notes too, for --merge
    env_path.write_text(json.dumps({**env, "notes": notes}, indent=1))
    plot(rows, plot_path(args.out_name))
    print("\n".join(ratio_lines(rows)))
    print("\n".join(f"note: {n}" for n in notes[:40]))


def read_rows(csv_path: Path) -> list[dict[str, Any]]:
    """A results CSV's rows with their fields back as the run wrote them."""
    import csv

    with open(csv_path) as f:
        return [{k: _cell(v) for k, v in row.items()} for row in csv.DictReader(f)]


def _cell(value: str) -> Any:
    """A CSV field back to what the run wrote: None, int, float or text."""
    if value == "":
        return None
    for kind in (int, float):
        try:
            return kind(value)
        except ValueError:
            pass
    return value


def merge(names: list[str], out_name: str) -> None:
    """One table from several runs' results (results/<name>.csv): a later run's row replaces an earlier
    one of the same (model, activation, path, dtype, batch), unless it only holds an error and the
    earlier one a time; a replaced time is kept in the notes. Column run names each row's source; a
    name may be an earlier merge's output, whose rows and run headers keep their sources."""
    from common import RESULTS, write_table

    merged: dict[tuple[Any, ...], dict[str, Any]] = {}
    notes: list[str] = []
    header: dict[str, str] = {}
    counts: list[tuple[str, str]] = []
    for name in names:
        env = json.loads((RESULTS / f"{name}.env.json").read_text())
        runs = {k: v for k, v in env.items() if k.startswith("run ")}
        if runs:  # an earlier merge: its notes are prefixed already and its runs keep their names
            notes += env.get("notes", [])
            header.update(runs)
            counts.append(("(per run)", "(per run)"))
        else:
            notes += [f"{name}: {n}" for n in env.pop("notes", [])]
            counts.append((env.get("warmup", "(per run)"), env.get("iters", "(per run)")))
            header[f"run {name}"] = ", ".join(f"{k}: {v}" for k, v in env.items())
        for r in read_rows(RESULTS / f"{name}.csv"):
            r["run"] = r.get("run") or name
            key = (r["model"], r["activation"], r["path"], r["dtype"], r["batch"])
            earlier = merged.get(key)
            if earlier is not None and r.get("ms_median") is None and earlier.get("ms_median") is not None:
                continue  # a failed attempt does not hide a measured row
            if earlier is not None and r.get("ms_median") is not None and earlier.get("ms_median") is not None:
                # a cell timed twice: the table shows the later time, the notes keep the earlier one
                notes.append(
                    f"{' '.join(map(str, key))}: {r['run']}'s {r['ms_median']:.3f} ms replaces "
                    f"{earlier['run']}'s {earlier['ms_median']:.3f} ms"
                )
            merged[key] = r
    rows = list(merged.values())
    same = set(counts)  # the runs' --warmup/--iters, where they agree
    warmup, iters = same.pop() if len(same) == 1 else ("(per run)", "(per run)")
    method = argparse.Namespace(warmup=warmup, iters=iters)
    write_table(out_name, rows, header, markdown(rows, notes, method))
    (RESULTS / f"{out_name}.env.json").write_text(json.dumps({**header, "notes": notes}, indent=1))
    plot(rows, plot_path(out_name))
    print("\n".join(ratio_lines(rows)))


def environment(args: argparse.Namespace) -> dict[str, str]:
    from common import commit
    from common import environment as cuda_environment

    import torch_mish

    if args.device == "cuda":
        env = cuda_environment()  # with the commit
    else:
        env = {"device": "cpu", "torch": torch.__version__, "torch_mish": torch_mish.__version__, "commit": commit()}
    env["darknet"] = str(darknet_available())
    # Inductor/Triton settings from the caller's environment can change what a search picks
    # (TRITON_PTXAS_PATH, say), so they belong to the result; the cache's location does not.
    tuning_env = {
        k: v
        for k, v in os.environ.items()
        if k.startswith(("TORCHINDUCTOR_", "TRITON_")) and k != "TORCHINDUCTOR_CACHE_DIR"
    }
    if tuning_env:
        env["inductor_env"] = json.dumps(tuning_env, sort_keys=True)
    env["command"] = shlex.join(sys.argv[1:])
    env["warmup"], env["iters"] = str(args.warmup), str(args.iters)
    return env


if __name__ == "__main__":
    main()
