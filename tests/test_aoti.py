"""AOTInductor: torch.ops.mish in packages built by aoti_compile_and_package, run from Python (in this
process and a fresh one) and from C++ (examples/aoti/runner.cpp), both ways the op can go: kept as
torch_mish's kernel (an extern call) or decomposed by Inductor (torch_mish/_inductor.py)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from helpers import all_half_values, assert_mish_close, edge_values, mish_reference, random_inputs, requires_cuda
from torch import nn

import torch_mish
import torch_mish._inductor as mi
import torch_mish.aoti

ROOT = Path(__file__).resolve().parent.parent


class OpOnly(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch_mish.mish(x)


class ConvMish(nn.Module):
    """Conv -> Mish -> Conv -> Mish + residual: Mish next to the code Inductor fuses it into."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(4, 8, 3, padding=1)
        self.conv2 = nn.Conv2d(8, 8, 1)
        self.act = torch_mish.Mish()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.act(self.conv1(x))
        return self.act(self.conv2(y)) + y


@pytest.fixture(autouse=True)
def _decomposition_restored() -> Iterator[None]:
    before = mi.is_registered()
    yield
    (mi.register if before else mi.unregister)()


def package_text(path: Path) -> str:
    with zipfile.ZipFile(path) as zf:
        return "".join(zf.read(n).decode(errors="replace") for n in zf.namelist() if n.endswith((".cpp", ".json")))


def build_package(model: nn.Module, x: torch.Tensor, path: Path, lowered: bool) -> Path:
    with torch.no_grad(), mi.lowered(lowered):
        ep = torch.export.export(model, (x,))
        assert any(n.target is torch.ops.mish.mish.default for n in ep.graph.nodes), "export dropped the op"
        torch._inductor.aoti_compile_and_package(ep, package_path=str(path))
    # A kept op is an extern node of the proxy executor, listed in the package's JSON by target. (Not
    # the op's name alone: kernel comments name the original aten op of decomposed code too.)
    extern = '"target": "mish::mish"' in package_text(path)
    assert extern == (not lowered), (
        "the package should call torch_mish's kernel" if not lowered else "the decomposition was not applied"
    )
    return path


def load_in_fresh_process(path: Path, x: torch.Tensor, tmp_path: Path) -> torch.Tensor:
    """torch_mish.aoti.load_package and one call in a new interpreter (where the package would be deployed)."""
    torch.save(x.cpu(), tmp_path / "x.pt")
    code = (
        "import sys, torch, torch_mish.aoti\n"
        "m = torch_mish.aoti.load_package(sys.argv[1])\n"
        "x = torch.load(sys.argv[2]).to(sys.argv[4])\n"
        "out = m(x)\n"
        "torch.save((out[0] if isinstance(out, (list, tuple)) else out).cpu(), sys.argv[3])\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code, str(path), str(tmp_path / "x.pt"), str(tmp_path / "y.pt"), x.device.type],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, f"loading in a fresh process ended with {proc.returncode}:\n{proc.stderr[-3000:]}"
    return torch.load(tmp_path / "y.pt")


# ------------------------------------------------------------------------ the decomposition (eager)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_decomposition_every_half_value(dtype: torch.dtype) -> None:
    x = all_half_values(dtype)
    assert_mish_close(mi.mish_decomposition(x), mish_reference(x), f"decomposition {dtype}")


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_decomposition_float(dtype: torch.dtype, gen: torch.Generator) -> None:
    x = random_inputs(100_000, gen).to(dtype)
    x = torch.cat([x, edge_values().to(dtype)])
    y = mi.mish_decomposition(x)
    assert y.dtype == dtype
    past = x >= 20
    assert torch.equal(y[past], x[past]), "mish(x) must be x itself from 20 on"
    if dtype == torch.float32:
        assert_mish_close(y, mish_reference(x), "decomposition float32")
    else:  # float64 through the float64 formula: looser than the kernel's contract, still tight
        ref = mish_reference(x)
        finite = ref.isfinite()
        assert torch.equal(y.isnan(), ref.isnan())
        assert torch.equal(y[ref.isinf()], ref[ref.isinf()])
        big = finite & (ref.abs() >= 1e-3)
        assert float(((y[big] - ref[big]) / ref[big]).abs().max()) < 1e-13
    assert float(mi.mish_decomposition(torch.tensor([-torch.inf], dtype=dtype))) == 0.0


@pytest.mark.parametrize("setting", [None, "0"])
def test_import_registers_the_decomposition(setting: str | None) -> None:
    """import torch_mish makes Inductor decompose the op (the faster AOTInductor package, measured),
    without importing Inductor itself; TORCH_MISH_INDUCTOR_DECOMPOSE=0 keeps the extern kernel."""
    code = (
        "import sys, torch_mish, torch_mish._inductor as mi\n"
        "assert 'torch._inductor.lowering' not in sys.modules, 'import torch_mish loaded Inductor'\n"
        "import torch._inductor.lowering\n"
        "print(mi.is_registered())\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "TORCH_MISH_INDUCTOR_DECOMPOSE"}
    if setting is not None:
        env["TORCH_MISH_INDUCTOR_DECOMPOSE"] = setting
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip() == str(setting is None)


def test_register_and_restore() -> None:
    mi.unregister()
    assert not mi.is_registered()
    with mi.lowered():
        assert mi.is_registered()
        with mi.lowered(False):
            assert not mi.is_registered()
        assert mi.is_registered()
    assert not mi.is_registered()


# ------------------------------------------------------------------------------- AOTInductor, CPU


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="libstdc++ scoping is Linux's dynamic loader")
def test_load_package_makes_libstdcxx_global(tmp_path: Path) -> None:
    """Before loading, torch_mish.aoti.load_package puts the process's libstdc++ in the global scope
    (a model library with its own libstdc++ copy crashed in its std::regex otherwise). Checked in a
    fresh interpreter, where torch loaded libstdc++ locally: std::locale::classic() becomes visible to
    dlsym(RTLD_DEFAULT)."""
    code = (
        "import ctypes, torch, torch_mish.aoti\n"
        "try:\n"
        "    torch_mish.aoti.load_package(sys.argv[1])\n"
        "except Exception:\n"
        "    pass\n"
        "print(hasattr(ctypes.CDLL(None), '_ZNSt6locale7classicEv'))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", "import sys\n" + code, str(tmp_path / "missing.pt2")],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip().splitlines()[-1] == "True"


@pytest.mark.slow  # an AOTInductor compile each: gpu_run.sh runs these in its aoti and tests_slow stages
@pytest.mark.parametrize("lowered", [False, True], ids=["kernel", "lowered"])
def test_aoti_cpu(lowered: bool, tmp_path: Path, gen: torch.Generator) -> None:
    """The op alone in float32 on the CPU: the kernel variant is bit-identical to eager (it calls the
    same kernel); the decomposition meets the float32 accuracy contract. Loaded here and in a fresh
    process."""
    x = torch.cat([random_inputs(4096, gen).float(), torch.tensor([torch.inf, -torch.inf, torch.nan])])
    model = OpOnly().eval()
    path = build_package(model, x, tmp_path / "op.pt2", lowered)
    expected = torch_mish.mish(x)
    # A fresh process first: if loading crashes (it did on one torch 2.11 image), this test fails
    # with the exit status instead of taking the whole test run down.
    fresh = load_in_fresh_process(path, x, tmp_path)
    for out in (fresh, torch_mish.aoti.load_package(path)(x)):
        y = out[0] if isinstance(out, (list, tuple)) else out
        if lowered:
            assert_mish_close(y, mish_reference(x), "AOTI CPU, lowered")
        else:
            assert torch.equal(y.view(torch.int32), expected.view(torch.int32)), "kernel variant differs from eager"


# ------------------------------------------------------------------------------- AOTInductor, CUDA


@pytest.mark.slow  # an AOTInductor compile each: gpu_run.sh runs these in its aoti and tests_slow stages
@requires_cuda
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("lowered", [False, True], ids=["kernel", "lowered"])
def test_aoti_cuda_every_half_value(dtype: torch.dtype, lowered: bool, tmp_path: Path) -> None:
    x = all_half_values(dtype).reshape(256, 256).cuda()
    path = build_package(OpOnly().eval(), x, tmp_path / "op.pt2", lowered)
    y = load_in_fresh_process(path, x, tmp_path)
    if lowered:
        assert_mish_close(y, mish_reference(x), f"AOTI CUDA lowered {dtype}")
    else:
        assert torch.equal(y.view(torch.int16), torch_mish.mish(x).cpu().view(torch.int16))


@pytest.mark.slow  # an AOTInductor compile each: gpu_run.sh runs these in its aoti and tests_slow stages
@requires_cuda
@pytest.mark.parametrize("lowered", [False, True], ids=["kernel", "lowered"])
def test_aoti_cuda_conv_model(lowered: bool, tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = ConvMish().eval().cuda().half().to(memory_format=torch.channels_last)
    x = torch.randn(2, 4, 32, 32, device="cuda").half().contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        expected = model(x).float()
    path = build_package(model, x, tmp_path / "conv.pt2", lowered)
    y = load_in_fresh_process(path, x, tmp_path).float()
    assert float((y - expected.cpu()).norm() / expected.norm()) < 2e-3


def runner_binary(tmp_path: Path) -> Path:
    prebuilt = os.environ.get("TORCH_MISH_AOTI_RUNNER")
    if prebuilt and Path(prebuilt).exists():
        return Path(prebuilt)
    if shutil.which(os.environ.get("CXX", "g++")) is None:
        pytest.skip("no C++ compiler to build examples/aoti/runner.cpp")
    out = tmp_path / "aoti_runner"
    proc = subprocess.run(
        ["bash", str(ROOT / "examples/aoti/build.sh"), str(out)],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "PY": sys.executable},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out


@pytest.mark.slow  # an AOTInductor compile, and the runner built unless TORCH_MISH_AOTI_RUNNER names one
@requires_cuda
@pytest.mark.parametrize("lowered", [False, True], ids=["kernel", "lowered"])
def test_aoti_cuda_cpp_runner(lowered: bool, tmp_path: Path) -> None:
    """The package run by a C++ program without Python, which loads torch_mish's op library first."""
    dtype = torch.float16
    x = all_half_values(dtype).reshape(256, 256)
    path = build_package(OpOnly().eval(), x.cuda(), tmp_path / "op.pt2", lowered)
    (tmp_path / "in.bin").write_bytes(x.view(torch.uint8).numpy().tobytes())
    libs = [a for lib in sorted((ROOT / "torch_mish").glob("_C*.so")) for a in ("--lib", str(lib))]
    cmd = [str(runner_binary(tmp_path)), *libs, "--package", str(path), "--shape", "256,256", "--dtype", "fp16"]
    cmd += ["--input", str(tmp_path / "in.bin"), "--output", str(tmp_path / "out.bin"), "--iters", "3"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, f"{' '.join(cmd)}\n{proc.stderr[-3000:]}"
    y = torch.frombuffer(bytearray((tmp_path / "out.bin").read_bytes()), dtype=dtype).reshape(256, 256)
    if lowered:
        assert_mish_close(y, mish_reference(x), "AOTI C++ lowered")
    else:
        assert torch.equal(y.view(torch.int16), torch_mish.mish(x.cuda()).cpu().view(torch.int16))
