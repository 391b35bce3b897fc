"""How the command counts Mish, the same way in every command: Mish ops (torch_mish's op, whose
TensorRT lowering the command chooses; nn.Mish / F.mish as aten.mish; ONNX Mish and TorchMish nodes)
apart from Mish written out as x * tanh(softplus(x)), which no Mish op carries."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class MishCount:
    ops: int  # torch.ops.mish.mish; in an ONNX file, Mish and TorchMish nodes
    aten: int = 0  # aten.mish: nn.Mish / F.mish
    composed: int = 0  # x * tanh(softplus(x)) in torch ops, or Mul(x, Tanh(Softplus(x))) in ONNX


def in_graph(graph: Any) -> MishCount:
    """Mish in a torch.export program's FX graph."""
    from torch_mish.ops import count_composed_mish, count_mish_nodes

    ops, aten = count_mish_nodes(graph)
    return MishCount(ops, aten, count_composed_mish(graph))


def in_onnx(path: Path) -> dict[str, int]:
    """Nodes of an ONNX file's graph: Mish, TorchMish, Mul(x, Tanh(Softplus(x))) chains, all nodes
    (function bodies included), and NMS nodes (NonMaxSuppression, DarknetNMS)."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    graph = list(model.graph.node)
    producer = {out: node for node in graph for out in node.output}

    def softplus_input(name: str) -> str | None:
        """x where ``name`` is Softplus(x), or torch's thresholded form Where(x > t, x, Softplus(x))."""
        node = producer.get(name)
        if node is not None and node.op_type == "Where" and softplus_input(node.input[2]) == node.input[1]:
            return node.input[1]
        return node.input[0] if node is not None and node.op_type == "Softplus" else None

    def tanh_softplus_input(name: str) -> str | None:
        tanh = producer.get(name)
        return softplus_input(tanh.input[0]) if tanh is not None and tanh.op_type == "Tanh" else None

    muls = [n for n in graph if n.op_type == "Mul" and len(n.input) == 2]
    everywhere = graph + [n for f in model.functions for n in f.node]
    return {
        "Mish": sum(n.op_type == "Mish" for n in graph),
        "TorchMish": sum(n.op_type == "TorchMish" for n in graph),
        "composed": sum(tanh_softplus_input(b) == a or tanh_softplus_input(a) == b for a, b in (n.input for n in muls)),
        "nodes": len(graph) + sum(len(f.node) for f in model.functions),
        # the Detector's NMS (--nms): the standard op, or torch_mish's plugin node
        **{op: sum(n.op_type == op for n in everywhere) for op in ("NonMaxSuppression", "DarknetNMS")},
    }


def summary(count: MishCount, lowering: str | None = None) -> str:
    """``72 Mish (native) and 1 aten.mish (...)``, or ``no Mish``."""
    parts = [f"{count.ops} Mish" + (f" ({lowering})" if lowering else "")] if count.ops else []
    if count.aten:
        decomposed = ", torch-tensorrt's decomposition" if lowering else ""
        parts.append(f"{count.aten} aten.mish (nn.Mish / F.mish{decomposed})")
    if count.composed:
        parts.append(f"{count.composed} x*tanh(softplus(x)) in plain ops")
    return " and ".join(parts) or "no Mish"


def convert_hint(count: MishCount, source_kind: str) -> str | None:
    """What to do about Mish that torch_mish's op does not carry, where there is some."""
    others = count.aten + count.composed
    if not others:
        return None
    fix = (
        "convert the model it was exported from with torch_mish.convert_mish(model) and export it again"
        if source_kind == "exported_program"
        else "torch_mish.convert_mish(model) swaps the modules that compute Mish for torch_mish.Mish"
    )
    return f"note: {others} Mish computed without torch_mish's op (its fused kernel, its TensorRT lowering): {fix}"


def report_fields(count: MishCount, lowering: str | None) -> dict[str, Any]:
    """The Mish fields of a build or inspect report."""
    return {
        "mish": {"count": count.ops, "lowering": lowering},
        "aten_mish": count.aten,
        "composed_mish": count.composed,
    }
