"""Inductor lowering for ``torch.ops.mish.mish``: a decomposition into pointwise aten ops.

Without it Inductor treats ``torch.ops.mish.mish`` as an opaque extern kernel: under AOTInductor every
Mish is a call to torch_mish's CUDA kernel, with its own launch and a round trip of the activation
through memory. With the decomposition registered, Inductor sees the one-exp form the CUDA kernel
uses, ``x * N / (N + 2)`` with ``N = e^x (e^x + 2)``, and fuses it into the neighbouring pointwise code
(a folded convolution's epilogue, a residual add, a concatenation).

The aten ops are chosen for the code Inductor's Triton backend emits from them, which runs near the
memory roofline only if the arithmetic is short. For float16, bfloat16 and float32 the formula is
computed in float32 with ``exp2(x * log2 e)`` (Triton's hardware ``ex2``; ``torch.exp`` becomes
libdevice's accurate ``expf``, several times longer) and ``1 / (N + 2)`` as ``rsqrt(N + 2)^2``
(the hardware reciprocal square root; Inductor's ``/`` is a division with range checks). A fused
``mish(conv + bias)`` epilogue then runs at the copy bandwidth, where the longer forms (``torch.exp``
and ``/``, or Inductor's own ``aten.mish``) are bound by their arithmetic. The error is that of the
CUDA kernel's fast float path (the accuracy contract; tests/test_compile_export.py checks it on the
GPU). float64 keeps ``exp`` and ``/``.

Special values match the kernel: ``mish(-inf) = 0`` (x is clamped at -1000, where e^x is 0), ``+inf``
stays ``+inf`` and NaN stays NaN.

    import torch_mish._inductor as mi
    mi.register()            # Inductor decomposes torch.ops.mish.mish from now on
    with mi.lowered(False):  # ... except inside this block (the extern kernel)
        ...

The registration lives in Inductor's own table of lowerings, so it applies to every graph compiled
after it in this process (``torch._inductor.aoti_compile_and_package`` included), and a fingerprint of
it goes into ``torch.compiler.config.cache_key_tag``, so that torch.compile's on-disk caches do not
serve code compiled from another decomposition. It does not change eager execution, ``torch.export``
graphs (they keep ``torch.ops.mish.mish``), ONNX or TensorRT.

``import torch_mish`` registers it (``register_by_default``), and ``torch.compile`` of inference
(no gradient) then keeps ``torch.ops.mish.mish`` so that this decomposition is what Inductor fuses
(torch_mish/functional.py): faster than Inductor's own ``aten.mish`` (tanh and log1p from libdevice)
and than the extern kernel, which costs a round trip through memory. ``TORCH_MISH_INDUCTOR_DECOMPOSE=0``
keeps the kernel (and ``torch.compile`` then hands Inductor ``aten.mish``).
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import inspect
import sys
from collections.abc import Callable, Iterator
from typing import Any

import torch

from torch_mish import _compat
from torch_mish._env import env_flag

_OP = torch.ops.mish.mish.default
# Above this, N / (N + 2) rounds to 1 in float32 and float64 alike (2e^-2x < eps), so clamping the
# exponent changes nothing and keeps N finite (inf / inf would be NaN).
_EXP_CLAMP = 20.0
# Below this e^x is 0 in every dtype: clamping the factor x there turns -inf * 0 (NaN) into -1000 * 0.
_ZERO_BELOW = -1000.0
_LOG2E = 1.4426950408889634
DECOMPOSE_BY_DEFAULT = env_flag("TORCH_MISH_INDUCTOR_DECOMPOSE") is not False


def mish_decomposition(x: torch.Tensor) -> torch.Tensor:
    """``torch.ops.mish.mish`` in pointwise aten ops: one exponential and one reciprocal per element."""
    if x.dtype == torch.float64:
        n = torch.exp(torch.clamp(x, max=_EXP_CLAMP))
        big_n = n * (n + 2.0)
        return torch.clamp(x, min=_ZERO_BELOW) * (big_n / (big_n + 2.0))
    xf = x.float()  # float16, bfloat16, float32: float32 arithmetic, rounded once
    t = torch.clamp(xf, max=_EXP_CLAMP) * _LOG2E
    if x.dtype == torch.float16:  # float16 mish rounds to 0 below x = -20.3, where e^x is still normal
        n = torch.exp2(t)
        big_n = n * (n + 2.0)
        r = torch.rsqrt(big_n + 2.0)  # N + 2 is in [2, 2.4e17]: r * r = 1 / (N + 2), no under- or overflow
        ratio = big_n * (r * r)
    else:
        # Triton's exp2 flushes subnormal results to 0, yet x * e^x is a normal float32 and bfloat16
        # down to x = -91.9 and a subnormal one below. So the exponential is taken 2^24 times larger,
        # s = 2^24 e^x (not flushed above x = -104, past which mish rounds to 0 in bfloat16), and the
        # scale is folded into the constants rather than multiplied out: with S = s (s + 2^25) = 2^48 N,
        # N / (N + 2) = S / (S + 2^49). S + 2^49 is in [2^49, 2^106]: r * r stays a normal float.
        s = torch.exp2(t + 24.0)
        big_s = s * (s + 2.0**25)
        r = torch.rsqrt(big_s + 2.0**49)
        ratio = big_s * (r * r)
    y = torch.clamp(xf, min=_ZERO_BELOW) * ratio
    if x.dtype == torch.float32:
        # The ratio is 1 only to a few ulps: past 20, return x itself as the kernel does (at FLT_MAX a
        # ratio above 1 would overflow). Half types round x * (1 +- 1e-7) back to x.
        y = torch.where(xf < _EXP_CLAMP, y, xf)
    return y.to(x.dtype)


def _lowerings() -> dict[object, Callable[..., object]]:
    from torch._inductor import lowering  # noqa: PLC0415 - Inductor is imported only when asked for

    return lowering.lowerings


@functools.cache
def _traced_decomposition(
    decomposition: Callable[[torch.Tensor], torch.Tensor], dtype: torch.dtype
) -> torch.fx.GraphModule:
    """The decomposition as a graph of the aten and prims ops Inductor has lowerings for (per dtype:
    the formula branches on it)."""
    from torch._inductor.decomposition import select_decomp_table  # noqa: PLC0415
    from torch._subclasses.fake_tensor import unset_fake_temporarily  # noqa: PLC0415
    from torch.fx.experimental.proxy_tensor import make_fx  # noqa: PLC0415

    with unset_fake_temporarily():  # lowering runs under Inductor's fake mode; trace on meta instead
        return make_fx(decomposition, decomposition_table=select_decomp_table())(
            torch.empty(1, dtype=dtype, device="meta")
        )


def _lower(x: Any) -> Any:  # noqa: ANN401 - Inductor's TensorBox, not a public type
    """Inductor lowering of ``torch.ops.mish.mish``: the decomposition's ops, each through Inductor's own
    lowering, so the result is one pointwise node that fuses into its neighbours as the decomposition
    would. One difference: with more than one consumer the result is stored. Inductor stores a reused
    pointwise result only above 30 ops (``realize_opcount_threshold``; this one has 18 in float16, 21
    in bfloat16), so the max-pools of a detector's SPP block, which read it 25, 81 and 169 times per
    output element, would evaluate Mish once per read (under max-autotune, where the bias moves into
    the convolution template and the activation reads one buffer). Stored once, the consumers that
    share its loop (a residual add, a concatenation) still fuse with it."""
    from torch._inductor.virtualized import V  # noqa: PLC0415

    graph = _traced_decomposition(mish_decomposition, x.get_dtype()).graph
    values: dict[torch.fx.Node, Any] = {}
    result = None
    lowerings = _lowerings()
    for node in graph.nodes:
        if node.op == "placeholder":
            values[node] = x
        elif node.op == "call_function":
            args, kwargs = torch.fx.node.map_arg((node.args, node.kwargs), values.__getitem__)
            values[node] = lowerings[node.target](*args, **kwargs)
        elif node.op == "output":
            result = torch.fx.node.map_arg(node.args[0], values.__getitem__)
    if isinstance(result, (list, tuple)):
        (result,) = result
    current = getattr(V.graph, "current_node", None)
    if current is not None and len(current.users) > 1:
        result.realize()
    return result


def _registered() -> Callable[..., object] | None:
    entry = _lowerings().get(_OP)
    return entry if getattr(entry, "__wrapped__", entry) is _lower else None


# Whether Inductor decomposes the op, now or as soon as Inductor loads (register_by_default defers the
# registration until then). torch_mish.functional reads it while Dynamo traces, which guards on it.
_decomposes = DECOMPOSE_BY_DEFAULT


def decomposes() -> bool:
    """True when graphs compiled from now on get the decomposition (registered, or to be on Inductor's load)."""
    return _decomposes


def is_registered() -> bool:
    """True when Inductor decomposes ``torch.ops.mish.mish`` in this process."""
    return _registered() is not None


_CACHE_TAG_PREFIX = "torch_mish.decomposition="


def _fingerprint(decomposition: Callable[[torch.Tensor], torch.Tensor]) -> str:
    """A short hash of the decomposition's and the lowering's source and the constants they read."""
    source = ""
    for fn in (decomposition, _lower):
        try:
            source += inspect.getsource(fn)
        except (OSError, TypeError):  # no source shipped: the name alone (a change then needs a cache wipe)
            source += f"{fn.__module__}.{fn.__qualname__}"
    constants = repr((_EXP_CLAMP, _ZERO_BELOW, _LOG2E))
    return hashlib.sha256(f"{source}{constants}".encode()).hexdigest()[:16]


def _tag_compile_caches(decomposition: Callable[[torch.Tensor], torch.Tensor] | None) -> None:
    """Put the registered decomposition into the key of torch.compile's on-disk caches.

    The AOTAutograd and FX graph caches key a compiled graph on the graph Dynamo traced (which holds
    ``mish.mish``, not its decomposition) and on torch's own source, so without this a changed
    decomposition (a torch_mish upgrade) would be served the code compiled from the old one, and a
    graph compiled with the op kept would be served where it is now decomposed. The user's own
    ``torch.compiler.config.cache_key_tag`` is kept; this adds or removes one ``|``-separated part.
    """
    config = getattr(torch.compiler, "config", None)
    if config is None or not hasattr(config, "cache_key_tag"):
        return  # a torch without the tag: its caches cannot tell decompositions apart
    tag = config.cache_key_tag
    parts = [p for p in (tag.split("|") if tag else []) if not p.startswith(_CACHE_TAG_PREFIX)]
    if decomposition is not None:
        parts.append(_CACHE_TAG_PREFIX + _fingerprint(decomposition))
    config.cache_key_tag = "|".join(parts)


def register() -> None:
    """Make Inductor decompose ``torch.ops.mish.mish`` (and so fuse it) in graphs compiled from now on."""
    global _decomposes  # noqa: PLW0603 - a plain global: what Dynamo guards on while tracing functional.mish
    if _registered() is None:
        from torch._inductor.lowering import register_lowering  # noqa: PLC0415

        _lowerings().pop(_OP, None)  # a fallback Inductor made for the op when it last compiled it
        register_lowering(_OP, type_promotion_kind=None)(_lower)
    _tag_compile_caches(mish_decomposition)
    _decomposes = True


def unregister() -> None:
    """Back to the extern kernel: Inductor calls torch_mish's kernel for every ``torch.ops.mish.mish``."""
    global _decomposes  # noqa: PLW0603 - a plain global: what Dynamo guards on while tracing functional.mish
    if _registered() is not None:
        del _lowerings()[_OP]  # Inductor then makes a fallback: a call to the op's kernel
    _tag_compile_caches(None)
    _decomposes = False


@contextlib.contextmanager
def lowered(enabled: bool = True) -> Iterator[None]:
    """Within the block, Inductor decomposes ``torch.ops.mish.mish`` (enabled) or keeps the kernel."""
    before = is_registered()
    (register if enabled else unregister)()
    try:
        yield
    finally:
        (register if before else unregister)()


_LOWERING_MODULE = "torch._inductor.lowering"


def register_by_default() -> None:
    """Register the decomposition unless ``TORCH_MISH_INDUCTOR_DECOMPOSE=0``: now if Inductor's
    lowerings are loaded, else as soon as they load (importing Inductor takes seconds; a process that
    never compiles does not pay for it)."""
    if not DECOMPOSE_BY_DEFAULT:
        return
    if _LOWERING_MODULE in sys.modules:
        register()
    else:
        _compat.after_import(_LOWERING_MODULE, lambda _module: register())
