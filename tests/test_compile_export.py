"""torch.compile (no graph breaks, CUDA graphs) and torch.export with the mish ops."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from helpers import (
    DEVICES,
    all_half_values,
    assert_mish_close,
    edge_values,
    mish_reference,
    random_inputs,
    requires_cuda,
)
from torch import nn

import torch_mish
import torch_mish.functional


def conv_bn_mish(device: str, inplace: bool = False) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1, bias=False),
        nn.BatchNorm2d(16),
        torch_mish.Mish(inplace=inplace),
        nn.Conv2d(16, 8, 3, padding=1, bias=False),
        nn.BatchNorm2d(8),
        torch_mish.Mish(),
    ).to(device)


# Inductor's CPU code generation takes most of a minute per case on a GPU machine whose cores the
# other test workers hold: the CPU cases run in the slow tier there (every CI run includes it).
@pytest.mark.parametrize("device", [pytest.param("cpu", marks=pytest.mark.slow), *DEVICES[1:]])
@pytest.mark.parametrize("inplace", [False, True])
@pytest.mark.parametrize("as_aten", [None, True, False], ids=["auto", "aten-mish", "custom-op"])
def test_compile_fullgraph_matches_eager(
    device: str, inplace: bool, as_aten: bool | None, gen: torch.Generator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every way torch.compile can see Mish: the default (aten.mish with gradients, the decomposed custom
    op without), aten.mish, and the custom op (TORCH_MISH_COMPILE_AS_ATEN=0), whose traced in-place form
    must save a copy of its input. Inference runs under no_grad as well, the default's other graph."""
    monkeypatch.setattr(torch_mish.functional, "_COMPILE_AS_ATEN", as_aten)
    torch._dynamo.reset()
    model = conv_bn_mish(device, inplace)
    compiled = torch.compile(model, fullgraph=True)
    x = torch.randn(2, 3, 12, 12, generator=gen).to(device)
    for training in (True, False):
        model.train(training)
        # Each backward runs before the other forward: a training forward updates BatchNorm's running
        # stats in place, which the other graph saved.
        xe, xc = x.clone().requires_grad_(), x.clone().requires_grad_()
        ye = model(xe)
        if training:
            ye.sum().backward()
        yc = compiled(xc)
        if training:
            yc.sum().backward()
            torch.testing.assert_close(xc.grad, xe.grad, rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(yc, ye, rtol=1e-5, atol=1e-5)
    with torch.no_grad():
        torch.testing.assert_close(compiled(x), model(x), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("device", DEVICES)
def test_compile_batchnorm_mish_matches_its_eager_fused_path(device: str, gen: torch.Generator) -> None:
    """Eager training runs BatchNormMish's fused autograd function; torch.compile traces the unfused
    batch_norm + mish (fullgraph: no graph break on the way). Both must agree."""
    torch._dynamo.reset()
    model = torch_mish.fuse_batchnorm_mish(conv_bn_mish(device)).train()
    assert isinstance(model[1], torch_mish.BatchNormMish)
    compiled = torch.compile(model, fullgraph=True)
    x = torch.randn(2, 3, 12, 12, generator=gen).to(device)
    xe, xc = x.clone().requires_grad_(), x.clone().requires_grad_()
    ye = model(xe)
    ye.square().sum().backward()
    yc = compiled(xc)
    yc.square().sum().backward()
    torch.testing.assert_close(yc, ye, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(xc.grad, xe.grad, rtol=1e-4, atol=1e-5)


def forward_targets_per_graph(model: nn.Module, inputs: list[tuple[torch.Tensor, bool]]) -> list[set[str]]:
    """Compile model once and call it on each (x, grad enabled); the call targets of every forward graph
    AOTAutograd hands the compiler, in order (a call that Dynamo's guards send to a new graph adds one)."""
    from torch._functorch.aot_autograd import aot_module_simplified

    torch._dynamo.reset()
    found: list[set[str]] = []

    def backend(gm: torch.fx.GraphModule, example: list[torch.Tensor]):  # noqa: ANN202
        def forward_compiler(g: torch.fx.GraphModule, _: list[torch.Tensor]):  # noqa: ANN202
            found.append({str(n.target) for n in g.graph.nodes if n.op == "call_function"})
            return g.forward

        return aot_module_simplified(gm, example, fw_compiler=forward_compiler, bw_compiler=lambda g, _: g.forward)

    compiled = torch.compile(model, backend=backend, fullgraph=True)
    for x, grad in inputs:
        with torch.set_grad_enabled(grad):
            out = compiled(x)
        if out.requires_grad:
            out.sum().backward()
    return found


def test_compile_hands_inductor_aten_mish_with_gradients_and_the_op_without(monkeypatch: pytest.MonkeyPatch) -> None:
    """By default one compiled model gets two graphs: where a gradient is needed, aten.mish (Inductor fuses
    its forward and backward and may recompute it in backward instead of saving); under no_grad,
    torch.ops.mish.mish, whose decomposition (torch_mish/_inductor.py) Inductor fuses, faster than its
    aten.mish code (docs/performance.md)."""
    import torch_mish._inductor as mi

    monkeypatch.setattr(torch_mish.functional, "_COMPILE_AS_ATEN", None)  # the default, whatever the env says
    with mi.lowered(True):
        calls = [(torch.randn(2, 3, 8, 8, requires_grad=True), True), (torch.randn(2, 3, 8, 8), False)]
        graphs = forward_targets_per_graph(conv_bn_mish("cpu").train(), calls)
    assert len(graphs) == 2, graphs
    training, inference = graphs
    assert "aten.mish.default" in training and not any(t.startswith("mish.") for t in training), sorted(training)
    assert "mish.mish.default" in inference and "aten.mish.default" not in inference, sorted(inference)


def test_compile_inference_without_the_decomposition_hands_inductor_aten_mish(monkeypatch: pytest.MonkeyPatch) -> None:
    """With the decomposition unregistered at run time (mi.lowered(False), as TORCH_MISH_INDUCTOR_DECOMPOSE=0
    at import), inference traces aten.mish: the op would reach Inductor as an unfused extern kernel."""
    import torch_mish._inductor as mi

    monkeypatch.setattr(torch_mish.functional, "_COMPILE_AS_ATEN", None)
    with mi.lowered(False):
        (targets,) = forward_targets_per_graph(conv_bn_mish("cpu").eval(), [(torch.randn(2, 3, 8, 8), False)])
    assert "aten.mish.default" in targets and "mish.mish.default" not in targets, sorted(targets)


@pytest.mark.parametrize("device", DEVICES)
def test_compiled_inference_is_the_decomposition(
    device: str, gen: torch.Generator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Inductor's code for an inference graph is the decomposition, fused (no call of torch_mish's kernel),
    and meets the accuracy contract: on CUDA that checks the Triton code's hardware exp2 and rsqrt, over
    every float16/bfloat16 value and random float32 with special values (x >= 20 returns x itself)."""
    from torch._inductor.utils import run_and_get_code

    import torch_mish._inductor as mi

    monkeypatch.setattr(torch_mish.functional, "_COMPILE_AS_ATEN", None)
    inputs = [all_half_values(torch.float16), all_half_values(torch.bfloat16)]
    inputs.append(torch.cat([random_inputs(200_000, gen), edge_values()]).float())
    model = torch_mish.Mish().eval()
    for x in (t.to(device) for t in inputs):
        torch._dynamo.reset()
        with torch.no_grad(), mi.lowered(True):
            y, code = run_and_get_code(torch.compile(model, fullgraph=True), x)
        # generated kernels name the op they came from in comments ("Original ATen: [mish.mish]")
        calls = [line for c in code for line in c.splitlines() if "mish.mish" in line and "#" not in line]
        assert not calls, f"the op was not decomposed: {calls[:3]}"
        assert "exp2" in "\n".join(code), "no exp2 in the generated code: not the decomposition"
        assert_mish_close(y, mish_reference(x), f"compiled decomposition, {device}, {x.dtype}")
        if x.dtype == torch.float32:
            past = x >= 20
            assert torch.equal(y[past], x[past]), "mish(x) must be x itself from 20 on"


class PooledMish(nn.Module):
    """A detector's SPP block: one Mish result read by max-pools (every element 25, 81 and 169 times)
    and by a concatenation. ``pools=False`` is the same convolution and Mish with one consumer."""

    def __init__(self, pools: bool) -> None:
        super().__init__()
        self.conv = nn.Conv2d(8, 8, 1)
        self.pools = nn.ModuleList(nn.MaxPool2d(k, 1, k // 2) for k in (13, 9, 5)) if pools else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch_mish.mish(self.conv(x))
        return y if self.pools is None else torch.cat([*(pool(y) for pool in self.pools), y], 1)


@pytest.mark.parametrize("device", DEVICES)
def test_compiled_mish_with_several_consumers_is_computed_once(
    device: str, gen: torch.Generator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A Mish result with several consumers is stored once: the generated code evaluates Mish (its one
    rsqrt) in as many places as for a single consumer, where pools inlining it would evaluate it in each."""
    from torch._inductor.utils import run_and_get_code

    import torch_mish._inductor as mi

    monkeypatch.setattr(torch_mish.functional, "_COMPILE_AS_ATEN", None)
    x = torch.randn(2, 8, 12, 12, generator=gen).to(device)
    evaluations = {}
    for pools in (False, True):
        torch.manual_seed(0)
        model = PooledMish(pools).to(device).eval()
        torch._dynamo.reset()
        with torch.no_grad(), mi.lowered(True):
            y, code = run_and_get_code(torch.compile(model, fullgraph=True), x)
            torch.testing.assert_close(y, model(x), rtol=1e-5, atol=1e-5)  # eager: torch_mish's kernel
        evaluations[pools] = "\n".join(code).count("rsqrt")
    assert evaluations[False] > 0, "no rsqrt in the generated code: not the decomposition"
    assert evaluations[True] == evaluations[False], f"Mish evaluated in {evaluations} places: not stored once"


def test_compile_caches_key_on_the_decomposition(
    tmp_path: Path, gen: torch.Generator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """torch.compile's on-disk caches key a graph on what Dynamo traced (mish.mish, not its
    decomposition): a changed decomposition, as after a torch_mish upgrade, must compile anew instead
    of being served the code compiled from the old one."""
    import torch_mish._inductor as mi

    shipped = mi.mish_decomposition

    def halved(t: torch.Tensor) -> torch.Tensor:  # another decomposition, easy to tell apart
        return shipped(t) * 0.5

    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path))  # caches of this test alone
    monkeypatch.setattr(torch_mish.functional, "_COMPILE_AS_ATEN", None)
    x = torch.randn(4096, generator=gen)

    def compile_and_run() -> torch.Tensor:
        torch._dynamo.reset()  # forget the in-process compilation: the next one consults the disk caches
        with torch.no_grad():
            return torch.compile(torch_mish.Mish(), fullgraph=True)(x)

    before = mi.is_registered()
    try:
        mi.register()
        first = compile_and_run()
        monkeypatch.setattr(mi, "mish_decomposition", halved)
        mi.register()
        second = compile_and_run()
    finally:
        mi.unregister()  # removes whichever decomposition is registered
        monkeypatch.setattr(mi, "mish_decomposition", shipped)
        (mi.register if before else mi.unregister)()
    assert_mish_close(first, mish_reference(x), "compiled decomposition")
    torch.testing.assert_close(second, first * 0.5, msg="the cached code of the old decomposition was served")


def test_cache_key_tag_keeps_the_users_part() -> None:
    """register() adds the decomposition's part to cache_key_tag and unregister() removes it; the
    user's own tag (a cache-busting string, say) stays as it was."""
    import torch_mish._inductor as mi

    before = mi.is_registered()
    # config.patch, not monkeypatch: monkeypatch's undo deletes the attribute, which hides a config entry
    with torch.compiler.config.patch(cache_key_tag="team-a|v2"):
        try:
            mi.register()
            mi.register()  # twice: still one part
            user, *ours = torch.compiler.config.cache_key_tag.rsplit("|", 1)
            assert user == "team-a|v2" and len(ours) == 1 and ours[0].startswith("torch_mish.decomposition=")
            mi.unregister()
            assert torch.compiler.config.cache_key_tag == "team-a|v2"
        finally:
            (mi.register if before else mi.unregister)()
    assert ("torch_mish.decomposition=" in torch.compiler.config.cache_key_tag) == before


@pytest.mark.parametrize("device", DEVICES)
def test_compile_dynamic_shapes(device: str, gen: torch.Generator) -> None:
    """One compiled graph serves every size: a recompilation per shape would cost seconds each."""
    from torch._dynamo.testing import CompileCounterWithBackend

    torch._dynamo.reset()
    counter = CompileCounterWithBackend("inductor")
    fn = torch.compile(torch_mish.mish, fullgraph=True, dynamic=True, backend=counter)
    for n in (5, 17, 1000):
        x = torch.randn(n, 3, generator=gen).to(device)
        torch.testing.assert_close(fn(x), torch_mish.mish(x), rtol=1e-5, atol=1e-6)  # Inductor's own math
    assert counter.frame_count == 1, f"compiled {counter.frame_count} times for 3 sizes"


def test_export_keeps_the_custom_op(tmp_path, gen: torch.Generator) -> None:  # noqa: ANN001
    model = conv_bn_mish("cpu").eval()
    x = torch.randn(2, 3, 12, 12, generator=gen)
    batch = torch.export.Dim("batch", min=1, max=64)
    ep = torch.export.export(model, (x,), dynamic_shapes=({0: batch},))
    targets = [n.target for n in ep.graph.nodes if n.op == "call_function"]
    assert targets.count(torch.ops.mish.mish.default) == 2, targets
    assert torch.ops.aten.mish.default not in targets
    torch.testing.assert_close(ep.module()(x), model(x), rtol=0, atol=0)
    path = tmp_path / "model.pt2"
    torch.export.save(ep, path)
    loaded = torch.export.load(path)
    x5 = torch.randn(5, 3, 12, 12, generator=gen)
    torch.testing.assert_close(loaded.module()(x5), model(x5), rtol=0, atol=0)


def test_exported_program_reloads_in_fresh_process(tmp_path, gen: torch.Generator) -> None:  # noqa: ANN001
    """A saved program loads where torch_mish is imported, with the op in its graph, bit-exact."""
    from yolov4_csp import YOLOv4CSP

    torch.manual_seed(0)
    model = YOLOv4CSP(width=0.0625, depth=0.34, num_classes=3).eval()
    x = torch.randn(1, 3, 64, 64, generator=gen)
    torch.export.save(torch.export.export(model, (x,)), tmp_path / "yolo.pt2")
    torch.save(x, tmp_path / "x.pt")
    with torch.no_grad():
        expected = model(x)
    script = textwrap.dedent(f"""
        import torch, torch_mish
        program = torch.export.load({str(tmp_path / "yolo.pt2")!r})
        assert torch.ops.mish.mish.default in {{n.target for n in program.graph.nodes}}
        torch.save(program.module()(torch.load({str(tmp_path / "x.pt")!r})), {str(tmp_path / "y.pt")!r})
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    for got, exp in zip(torch.load(tmp_path / "y.pt"), expected, strict=True):
        torch.testing.assert_close(got, exp, rtol=0, atol=0)


def test_export_training_ir_keeps_the_custom_op() -> None:
    model = conv_bn_mish("cpu").train()
    ep = torch.export.export(model, (torch.randn(2, 3, 8, 8),))
    targets = {n.target for n in ep.graph.nodes if n.op == "call_function"}
    assert targets & {torch.ops.mish.mish, torch.ops.mish.mish.default}


@requires_cuda
def test_cuda_graphs_reduce_overhead(gen: torch.Generator) -> None:
    """CUDA graph capture fails or gives stale results if a kernel runs on the wrong stream."""
    torch._dynamo.reset()
    model = conv_bn_mish("cuda").eval()
    compiled = torch.compile(model, mode="reduce-overhead", fullgraph=True)
    for _ in range(4):
        x = torch.randn(4, 3, 16, 16, generator=gen).cuda()
        torch.testing.assert_close(compiled(x), model(x), rtol=1e-5, atol=1e-5)


@requires_cuda
def test_manual_cuda_graph_capture_on_side_stream(gen: torch.Generator) -> None:
    x = torch.randn(1 << 16, generator=gen).cuda()
    y = torch.empty_like(x)
    stream = torch.cuda.Stream()
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.stream(stream):
        torch_mish.mish(x)  # warm-up outside capture
        with torch.cuda.graph(graph, stream=stream):
            y.copy_(torch_mish.mish(x))
    for _ in range(3):
        x.copy_(torch.randn(1 << 16, generator=gen).cuda())
        graph.replay()
        assert_mish_close(y, mish_reference(x), "replayed CUDA graph")


@requires_cuda
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_cuda_autocast_training_step(dtype: torch.dtype, gen: torch.Generator) -> None:
    """After an autocast convolution Mish runs in the low-precision dtype (BatchNorm would hand it
    float32: autocast runs batch_norm in float32), and gradients flow."""
    model = nn.Sequential(nn.Conv2d(3, 8, 3), torch_mish.Mish(), nn.Conv2d(8, 4, 3), torch_mish.Mish()).cuda()
    x = torch.randn(4, 3, 16, 16, generator=gen).cuda()
    with torch.autocast("cuda", dtype=dtype):
        h = model[0](x)
        y = model(x)
    assert h.dtype == dtype and y.dtype == dtype
    y.float().sum().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())


def test_strict_export_keeps_the_custom_op() -> None:
    """torch.export with strict=True traces through Dynamo: torch_mish must still see an export."""
    model = conv_bn_mish("cpu").eval()
    ep = torch.export.export(model, (torch.randn(2, 3, 12, 12),), strict=True)
    targets = [n.target for n in ep.graph.nodes if n.op == "call_function"]
    assert targets.count(torch.ops.mish.mish.default) == 2, targets


def test_fx_symbolic_trace() -> None:
    """torch.fx.symbolic_trace (feature extractors, FX quantization) passes proxies through Mish."""
    model = conv_bn_mish("cpu").eval()
    traced = torch.fx.symbolic_trace(model)
    x = torch.randn(2, 3, 12, 12)
    torch.testing.assert_close(traced(x), model(x), rtol=0, atol=0)
