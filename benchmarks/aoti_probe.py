"""AOTInductor on this machine: why loading a package crashed, and whether torch.ops.mish survives it.

    python benchmarks/aoti_probe.py [--out out/aoti] [--runner out/aoti/aoti_runner] [--gdb]

Every step runs in its own process (a crash ends only that step, and its exit status is recorded):
1. compile: tiny packages with aoti_compile_and_package. Plain Conv2d + BatchNorm + nn.Mish without
   torch_mish imported (default options, then one variant per option that changes how the package
   is built or loaded), a CPU package, and torch_mish models: Conv -> Mish with the op kept as
   torch_mish's kernel and with the Inductor decomposition (torch_mish/_inductor.py), and the op
   alone on all 65536 float16 values.
2. load: each package in a fresh process with aoti_load_package, run, compared with eager (saved
   at compile time). For a crash: the model library opened alone (ctypes, static initializers), the
   CUDA container runner on the extracted library (no package loader), the package's metadata only,
   and a native backtrace (an LD_PRELOAD SIGSEGV handler; with --gdb also cuda-gdb's).
3. C++: examples/aoti/runner.cpp (built by examples/aoti/build.sh) runs each CUDA package
   without Python, output compared with eager.
Writes <out>/aoti_probe.json and aoti_probe.md; prints the summary table last.
"""

from __future__ import annotations

import argparse
import atexit
import concurrent.futures as cf
import json
import os
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# name -> (model kind, device, dtype, inductor options)
VARIANTS: dict[str, tuple[str, str, str, dict[str, object]]] = {
    "plain": ("plain", "cuda", "fp32", {}),
    "plain_embed_kernels": ("plain", "cuda", "fp32", {"aot_inductor.embed_kernel_binary": True}),
    "plain_no_multi_arch": ("plain", "cuda", "fp32", {"aot_inductor.emit_multi_arch_kernel": False}),
    "plain_consts_outside_so": ("plain", "cuda", "fp32", {"aot_inductor.package_constants_in_so": False}),
    "plain_wrapper_O0": ("plain", "cuda", "fp32", {"aot_inductor.compile_wrapper_opt_level": "O0"}),
    "plain_cpu": ("plain", "cpu", "fp32", {}),
    "mish_kernel": ("mish", "cuda", "fp16", {}),
    "mish_lowered": ("mish", "cuda", "fp16", {}),
    "op_kernel": ("op", "cuda", "fp16", {}),
    "op_lowered": ("op", "cuda", "fp16", {}),
}

SEGV_HANDLER_C = r"""
#define _GNU_SOURCE
#include <execinfo.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
static void handler(int sig) {
  void* frames[64];
  int n = backtrace(frames, 64);
  fprintf(stderr, "\n=== native backtrace (signal %d: %s) ===\n", sig, strsignal(sig));
  backtrace_symbols_fd(frames, n, 2);
  signal(sig, SIG_DFL);
  raise(sig);
}
__attribute__((constructor)) static void install(void) {
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = handler;
  sa.sa_flags = SA_ONSTACK;
  sigaction(SIGSEGV, &sa, NULL);
  sigaction(SIGBUS, &sa, NULL);
  sigaction(SIGABRT, &sa, NULL);
}
"""


# ---------------------------------------------------------------------------------------------- steps


def _dtype(name: str) -> object:
    import torch

    return {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32}[name]


def build_model(kind: str, device: str, dtype_name: str) -> tuple[object, tuple[object, ...]]:
    import torch
    from torch import nn

    torch.manual_seed(0)
    dtype = _dtype(dtype_name)
    if kind == "plain":
        model = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16), nn.Mish())
        x = torch.randn(2, 3, 32, 32)
    elif kind == "mish":
        import torch_mish

        class Block(nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.conv1 = nn.Conv2d(8, 16, 3, padding=1)
                self.act1 = torch_mish.Mish()
                self.conv2 = nn.Conv2d(16, 16, 1)
                self.act2 = torch_mish.Mish()

            def forward(self, x: torch.Tensor) -> torch.Tensor:
                y = self.act1(self.conv1(x))
                return self.act2(self.conv2(y)) + y

        model = Block()
        x = torch.randn(4, 8, 64, 64)
    else:  # the op alone, on every float16 bit pattern
        import torch_mish

        class Op(nn.Module):
            def forward(self, x: torch.Tensor) -> torch.Tensor:
                return torch_mish.mish(x)

        model = Op()
        x = torch.arange(-(2**15), 2**15, dtype=torch.int32).to(torch.int16).view(torch.float16).reshape(256, 256)
    model = model.eval().to(device)
    if kind != "op":
        model = model.to(dtype)
    return model, (x.to(device=device, dtype=dtype),)


def step_compile(name: str, workdir: Path) -> dict[str, object]:
    kind, device, dtype_name, options = VARIANTS[name]
    import torch

    if kind != "plain":
        import torch_mish  # noqa: F401
        import torch_mish._inductor as mi

        (mi.register if name.endswith("_lowered") else mi.unregister)()
    from torch._inductor import config as inductor_config

    known = set(inductor_config.get_config_copy())
    missing = [k for k in options if k not in known]
    if missing:
        return {"status": "unsupported option", "missing": missing}
    model, args = build_model(kind, device, dtype_name)
    with torch.no_grad():
        ref = model(*args)
        t0 = time.perf_counter()
        ep = torch.export.export(model, args)
        graph_ops = sorted({str(n.target) for n in ep.graph.nodes if n.op == "call_function"})
        pkg = workdir / f"{name}.pt2"
        torch._inductor.aoti_compile_and_package(ep, package_path=str(pkg), inductor_configs=options)
        compile_s = time.perf_counter() - t0
    torch.save({"args": [a.cpu() for a in args], "ref": ref.cpu()}, workdir / f"{name}.ref.pt")
    with zipfile.ZipFile(pkg) as zf:
        names = zf.namelist()
        sources = [n for n in names if n.endswith((".cpp", ".json", ".py"))]
        text = "".join(zf.read(n).decode(errors="replace") for n in sources)
    return {
        "status": "ok",
        "compile_s": round(compile_s, 1),
        "export_graph_ops": graph_ops,
        "package_files": len(names),
        "package_mb": round(pkg.stat().st_size / 2**20, 2),
        # how the op ended up in the package: an extern call through the proxy executor, or gone
        "mish_extern_call": "mish.mish" in text or "mish::mish" in text,
        "proxy_executor_calls": text.count("proxy_executor_call_function"),
        "cubins": sum(n.endswith(".cubin") for n in names),
    }


def _ordered_bits(t: object) -> object:
    """Integers that order like the float values (sign-magnitude to two's complement): ulp distances."""
    import torch

    bits = t.view({2: torch.int16, 4: torch.int32}[t.element_size()]).long()
    top = 1 << (8 * t.element_size() - 1)
    return torch.where(bits < 0, -top - bits, bits)


def _compare(out: object, ref: object) -> dict[str, object]:
    import torch

    out_t = (out[0] if isinstance(out, (list, tuple)) else out).cpu()
    a, b = out_t.float(), ref.float()
    finite = torch.isfinite(a) & torch.isfinite(b)
    nonfinite_match = bool(
        torch.equal(a.isnan(), b.isnan())
        and torch.equal(a.isinf(), b.isinf())
        and torch.equal(a[a.isinf()], b[b.isinf()])
    )
    diff = (a[finite] - b[finite]).abs()
    result: dict[str, object] = {
        "bitwise_equal": bool(torch.equal(_ordered_bits(out_t), _ordered_bits(ref)))
        if out_t.dtype == ref.dtype
        else False,
        "max_abs_diff": float(diff.max()) if diff.numel() else 0.0,
        "rel_norm_err": float(diff.norm() / b[finite].norm().clamp_min(1e-30)),
        "nonfinite_match": nonfinite_match,
    }
    if out_t.dtype == ref.dtype and out_t.element_size() in (2, 4):
        result["max_ulp"] = int((_ordered_bits(out_t) - _ordered_bits(ref))[finite].abs().max()) if finite.any() else 0
    return result


def step_load(name: str, workdir: Path) -> dict[str, object]:
    import torch

    if VARIANTS[name][0] != "plain":
        import torch_mish  # noqa: F401 - registers torch.ops.mish before the package runs
    saved = torch.load(workdir / f"{name}.ref.pt")
    device = VARIANTS[name][1]
    t0 = time.perf_counter()
    compiled = torch._inductor.aoti_load_package(str(workdir / f"{name}.pt2"))
    load_s = time.perf_counter() - t0
    with torch.no_grad():
        out = compiled(*[a.to(device) for a in saved["args"]])
    if device == "cuda":
        torch.cuda.synchronize()
    return {"status": "ok", "load_s": round(load_s, 2), **_compare(out, saved["ref"])}


def _extract(name: str, workdir: Path) -> Path:
    dest = workdir / f"{name}_extracted"
    with zipfile.ZipFile(workdir / f"{name}.pt2") as zf:
        zf.extractall(dest)
    sos = sorted(dest.rglob("*.so"))
    if not sos:
        raise RuntimeError("no .so in the package")
    return sos[0]


def step_dlopen(name: str, workdir: Path) -> dict[str, object]:
    import ctypes

    import torch  # noqa: F401 - the model library needs libtorch's symbols

    so = _extract(name, workdir)
    ctypes.CDLL(str(so), mode=os.RTLD_LAZY | os.RTLD_GLOBAL)
    return {"status": "ok", "so": str(so.relative_to(workdir))}


def step_runner(name: str, workdir: Path) -> dict[str, object]:
    import torch

    if VARIANTS[name][0] != "plain":
        import torch_mish  # noqa: F401
    so = _extract(name, workdir)
    saved = torch.load(workdir / f"{name}.ref.pt")
    runner = torch._C._aoti.AOTIModelContainerRunnerCuda(str(so), 1, "cuda", str(so.parent))
    out = runner.run([a.cuda() for a in saved["args"]])
    torch.cuda.synchronize()
    return {"status": "ok", **_compare(out, saved["ref"])}


def step_metadata(name: str, workdir: Path) -> dict[str, object]:
    import torch

    meta = torch._C._aoti.AOTIModelPackageLoader.load_metadata_from_package(str(workdir / f"{name}.pt2"), "model")
    return {"status": "ok", "metadata": dict(meta)}


STEPS = {
    "compile": step_compile,
    "load": step_load,
    "dlopen": step_dlopen,
    "runner": step_runner,
    "metadata": step_metadata,
}


# ------------------------------------------------------------------------------------------ driver


_CHILDREN: set[subprocess.Popen[str]] = set()


def kill_children(*_: object) -> None:
    """End every step still running, with its own children (a killed probe leaves no compiles behind
    to disturb whatever runs next on the machine)."""
    for proc in list(_CHILDREN):
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def run_step(
    step: str, name: str, workdir: Path, env: dict[str, str] | None = None, timeout: int = 240
) -> dict[str, object]:
    cmd = [sys.executable, __file__, "--step", step, "--name", name, "--out", str(workdir)]
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        cmd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **(env or {})},
        start_new_session=True,
    )
    _CHILDREN.add(proc)
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        return {"status": "timeout", "wall_s": timeout}
    finally:
        _CHILDREN.discard(proc)
    log = workdir / f"{name}.{step}.log"
    log.write_text(stdout + "\n--- stderr ---\n" + stderr)
    result: dict[str, object] = {"rc": proc.returncode, "wall_s": round(time.perf_counter() - t0, 1)}
    lines = [ln for ln in stdout.splitlines() if ln.startswith("RESULT ")]
    if lines:
        result.update(json.loads(lines[-1][7:]))
    else:
        result["status"] = "crashed" if proc.returncode < 0 else "failed"
        result["stderr_tail"] = stderr[-3000:]
    return result


def native_backtrace(name: str, workdir: Path) -> str:
    src = workdir / f"segv_handler_{name}.c"
    lib = workdir / f"segv_handler_{name}.so"
    src.write_text(SEGV_HANDLER_C)
    subprocess.run(["gcc", "-shared", "-fPIC", "-O1", str(src), "-o", str(lib)], check=True)
    res = run_step("load", name, workdir, env={"LD_PRELOAD": str(lib), "TORCH_CPP_LOG_LEVEL": "INFO"})
    text = (workdir / f"{name}.load.log").read_text()
    start = text.find("=== native backtrace")
    bt = text[start:] if start >= 0 else f"(no native backtrace; step result {res.get('status')})\n" + text[-2000:]
    demangled = subprocess.run(["c++filt"], input=bt, capture_output=True, text=True)
    return demangled.stdout if demangled.returncode == 0 else bt


def gdb_backtrace(name: str, workdir: Path) -> str:
    gdb = "cuda-gdb"
    cmd = [
        gdb, "-q", "-batch", "-ex", "set pagination off", "-ex", "set cuda api_failures ignore", "-ex", "run",
        "-ex", "bt 40", "-ex", "info sharedlibrary",
        "--args", sys.executable, __file__, "--step", "load", "--name", name, "--out", str(workdir),
    ]  # fmt: skip
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=150)
    except (subprocess.TimeoutExpired, FileNotFoundError) as exc:
        return f"cuda-gdb: {exc}"
    text = proc.stdout + proc.stderr
    (workdir / f"{name}.gdb.log").write_text(text)
    i = text.find("signal SIG")
    return text[max(0, i - 200) : i + 6000] if i >= 0 else text[-3000:]


def run_cpp(runner: Path, name: str, workdir: Path) -> dict[str, object]:
    import torch

    saved = torch.load(workdir / f"{name}.ref.pt")
    x = saved["args"][0]
    inp, outp = workdir / f"{name}.in.bin", workdir / f"{name}.cpp_out.bin"
    inp.write_bytes(x.contiguous().view(torch.uint8).numpy().tobytes())
    libs = sorted(str(p) for p in (ROOT / "torch_mish").glob("_C*.so"))
    dtype = {torch.float16: "fp16", torch.bfloat16: "bf16", torch.float32: "fp32"}[x.dtype]
    cmd = [str(runner), *sum((["--lib", lib] for lib in libs), [])]
    cmd += ["--package", str(workdir / f"{name}.pt2"), "--shape", ",".join(map(str, x.shape)), "--dtype", dtype]
    cmd += ["--input", str(inp), "--output", str(outp), "--warmup", "3", "--iters", "10"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    result: dict[str, object] = {"rc": proc.returncode, "command": " ".join(cmd)}
    if proc.returncode != 0:
        result.update(status="crashed" if proc.returncode < 0 else "failed", stderr_tail=proc.stderr[-3000:])
        # the same model library without the package loader
        cmd[cmd.index("--package") + 1] = str(_extract(name, workdir))
        bare = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        result["bare_so"] = {"rc": bare.returncode, "stdout": bare.stdout[-1000:], "stderr_tail": bare.stderr[-2000:]}
        return result
    ref = saved["ref"]
    out = torch.frombuffer(bytearray(outp.read_bytes()), dtype=torch.uint8).view(ref.dtype)[: ref.numel()]
    result.update(status="ok", **json.loads(proc.stdout.splitlines()[-1]), **_compare(out.reshape(ref.shape), ref))
    return result


def main() -> None:  # noqa: PLR0912 - one driver, step by step
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="out/aoti")
    parser.add_argument("--runner", default="out/aoti/aoti_runner", help="the C++ runner (examples/aoti/build.sh)")
    parser.add_argument("--gdb", action="store_true", help="also take a cuda-gdb backtrace of a crashing load")
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--step", choices=sorted(STEPS), help=argparse.SUPPRESS)
    parser.add_argument("--name", help=argparse.SUPPRESS)
    args = parser.parse_args()
    workdir = Path(args.out).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    if args.step:  # a child process: one step, one RESULT line
        import faulthandler

        faulthandler.enable()
        print("RESULT " + json.dumps(STEPS[args.step](args.name, workdir)), flush=True)
        return

    import torch

    atexit.register(kill_children)
    signal.signal(signal.SIGTERM, lambda *_: (kill_children(), sys.exit(143)))
    names = [n for n in args.variants.split(",") if n]
    report: dict[str, object] = {
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none",
        "cxx": subprocess.run(["g++", "--version"], capture_output=True, text=True).stdout.splitlines()[0],
        "variants": {},
    }
    results: dict[str, dict[str, object]] = {n: {} for n in names}
    t0 = time.perf_counter()
    with cf.ThreadPoolExecutor(len(names)) as pool:  # compiles are CPU-bound and independent
        for n, res in zip(names, pool.map(lambda n: run_step("compile", n, workdir), names), strict=True):
            results[n]["compile"] = res
    print(f"compiled in {time.perf_counter() - t0:.0f} s", flush=True)
    loadable = [n for n in names if results[n]["compile"].get("status") == "ok"]
    with cf.ThreadPoolExecutor(max(1, len(loadable))) as pool:
        for n, res in zip(loadable, pool.map(lambda n: run_step("load", n, workdir), loadable), strict=True):
            results[n]["load"] = res
    crashed = [n for n in loadable if results[n]["load"].get("status") != "ok"]

    def isolate(n: str) -> None:  # where does the load fail
        results[n]["metadata"] = run_step("metadata", n, workdir)
        results[n]["dlopen"] = run_step("dlopen", n, workdir)
        results[n]["ldd"] = subprocess.run(["ldd", str(_extract(n, workdir))], capture_output=True, text=True).stdout
        if VARIANTS[n][1] == "cuda":
            results[n]["runner_direct"] = run_step("runner", n, workdir)

    with cf.ThreadPoolExecutor(max(1, len(crashed))) as pool:
        list(pool.map(isolate, crashed))
    traced = [n for n in ("plain", "plain_cpu") if n in crashed] or crashed[:1]
    if traced:
        with cf.ThreadPoolExecutor(len(traced)) as pool:
            report["native_backtrace"] = dict(
                zip(traced, pool.map(lambda n: native_backtrace(n, workdir), traced), strict=True)
            )
        if args.gdb:
            report["gdb_backtrace"] = {traced[0]: gdb_backtrace(traced[0], workdir)}
    runner = Path(args.runner)
    if runner.exists():
        for n in loadable:
            if VARIANTS[n][1] == "cuda":
                results[n]["cpp"] = run_cpp(runner, n, workdir)
    report["variants"] = results
    (workdir / "aoti_probe.json").write_text(json.dumps(report, indent=1, default=str))

    rows = [
        "| variant | compile | load (Python) | vs eager | C++ runner | vs eager (C++) |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for n in names:
        r = results[n]
        c, ld, cpp = r.get("compile", {}), r.get("load", {}), r.get("cpp", {})

        def verdict(d: dict[str, object]) -> str:
            if not d:
                return "-"
            if d.get("status") != "ok":
                return f"{d.get('status')} (rc {d.get('rc')})"
            return "ok"

        def err(d: dict[str, object]) -> str:
            if d.get("status") != "ok":
                return "-"
            return (
                "bitwise"
                if d.get("bitwise_equal")
                else f"max {d.get('max_abs_diff'):.2e}, rel {d.get('rel_norm_err'):.1e}"
            )

        comp = verdict(c) + (
            f", {c.get('compile_s')} s, extern mish: {c.get('mish_extern_call')}" if c.get("status") == "ok" else ""
        )
        rows.append(f"| {n} | {comp} | {verdict(ld)} | {err(ld)} | {verdict(cpp)} | {err(cpp)} |")
        for extra in ("metadata", "dlopen", "runner_direct"):
            if extra in r:
                rows.append(f"| {n}: {extra} | | {verdict(r[extra])} | | | |")
    table = "\n".join(rows)
    (workdir / "aoti_probe.md").write_text(
        f"# aoti_probe\n\n{json.dumps({k: v for k, v in report.items() if k != 'variants'}, indent=1)}\n\n{table}\n"
    )
    for key in ("native_backtrace", "gdb_backtrace"):
        for n, bt in (report.get(key) or {}).items():  # type: ignore[union-attr]
            print(f"--- {key} ({n}) ---\n{bt[:4000]}")
    print(table)


if __name__ == "__main__":
    main()
