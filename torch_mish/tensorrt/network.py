"""One TensorRT network, whichever way it was made: ``BuiltNetwork`` holds a network that torch-tensorrt
converted from a model (``inspect.build_network``) or that TensorRT's ONNX parser read from a file
(``build_onnx_network``), describes it (inputs, outputs, layers, precisions, optimization profiles) and
builds it into a serialized engine.

Nothing here needs a GPU: with TensorRT-RTX, networks are read and engines built on a CPU-only host
(engines for RTX GPUs, which that host cannot run).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tensorrt as trt
import torch

from torch_mish._cpu_tensorrt import allow_tensorrt_without_gpu

Shapes = tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]  # (min, opt, max)
# The precisions a strongly typed network computes in, as TensorRT names them.
COMPUTE_DTYPES = frozenset({"FLOAT", "HALF", "BF16", "FP8", "INT8", "FP4"})
_TRT_DTYPES = {torch.float32: "FLOAT", torch.float16: "HALF", torch.bfloat16: "BF16"}


def trt_name(value: Any) -> str:
    """A TensorRT enum value's bare name: ``DataType.HALF`` -> ``HALF``, ``LayerType.CONVOLUTION`` ->
    ``CONVOLUTION``."""
    return str(value).rsplit(".", 1)[-1]


@dataclass
class BuiltNetwork:
    """A TensorRT network with the builder that made it. Keep this object alive while using ``network``:
    ``owner`` (torch-tensorrt's interpreter, or the ONNX parser) holds the weights the network refers to."""

    network: trt.INetworkDefinition
    builder: trt.Builder
    make_config: Callable[[], trt.IBuilderConfig] = field(repr=False)  # a builder configuration with the profiles
    optimization_profiles: list[trt.IOptimizationProfile] = field(default_factory=list, repr=False)
    owner: Any = field(default=None, repr=False)
    timing_cache: bytes | None = None  # after build_serialized_engine(timing_cache=...): the updated cache

    def layers(self) -> list[trt.ILayer]:
        return [self.network.get_layer(i) for i in range(self.network.num_layers)]

    def layer_table(self) -> list[dict[str, Any]]:
        """One row per layer: index, name, type, and its first output's shape and dtype."""
        rows = []
        for index, layer in enumerate(self.layers()):
            out = layer.get_output(0) if layer.num_outputs else None
            rows.append(
                {
                    "index": index,
                    "name": layer.name,
                    "type": trt_name(layer.type),
                    "output_shape": list(out.shape) if out is not None else None,
                    "output_dtype": trt_name(out.dtype) if out is not None else None,
                }
            )
        return rows

    def layer_types(self) -> dict[str, int]:
        """Layer count by TensorRT layer type (``{"CONVOLUTION": 115, "ACTIVATION": 224, ...}``)."""
        counts: dict[str, int] = {}
        for layer in self.layers():
            name = trt_name(layer.type)
            counts[name] = counts.get(name, 0) + 1
        return counts

    def precisions(self) -> list[str]:
        """The dtypes the network computes in, read from its layers' outputs (the network is strongly
        typed: this is what the engine computes in)."""
        found = {row["output_dtype"] for row in self.layer_table()}
        return sorted(found & COMPUTE_DTYPES)

    def inputs(self) -> list[dict[str, Any]]:
        """Name, shape (-1 for a dynamic dimension) and dtype of each network input, in binding order."""
        return [_tensor(self.network.get_input(i)) for i in range(self.network.num_inputs)]

    def outputs(self) -> list[dict[str, Any]]:
        return [_tensor(self.network.get_output(i)) for i in range(self.network.num_outputs)]

    def name_outputs(self, names: Sequence[str]) -> None:
        """Name the network's outputs (an engine's output bindings), in order: torch-tensorrt names them
        output0, output1, ..."""
        if len(names) != self.network.num_outputs:
            raise ValueError(f"name_outputs: {len(names)} names for {self.network.num_outputs} network outputs")
        for i, name in enumerate(names):
            self.network.get_output(i).name = name

    def profiles(self) -> list[dict[str, Shapes]]:
        """The optimization profiles the engine will be built with, read back from TensorRT: per
        profile, input name -> (min, opt, max) shape."""
        names = [self.network.get_input(i).name for i in range(self.network.num_inputs)]
        return [{n: tuple(tuple(d) for d in p.get_shape(n)) for n in names} for p in self.optimization_profiles]  # type: ignore[misc]

    def build_serialized_engine(self, *, timing_cache: bytes | None = None) -> bytes:
        """Build the engine; its serialized bytes. Works on a CPU-only host with TensorRT-RTX (an engine
        for RTX GPUs).

        ``timing_cache``: a serialized TensorRT timing cache to start from (``b""`` for an empty one),
        as trtexec's ``--timingCacheFile`` reads it; the updated cache is then in ``timing_cache`` on
        this object, for the caller to write back."""
        with allow_tensorrt_without_gpu():
            config = self.make_config()
            if timing_cache is not None:
                config.set_timing_cache(config.create_timing_cache(timing_cache), False)
            engine = self.builder.build_serialized_network(self.network, config)
        if engine is None:
            raise RuntimeError("TensorRT build_serialized_network returned None (see the TensorRT log)")
        if timing_cache is not None:
            self.timing_cache = bytes(config.get_timing_cache().serialize())
        return bytes(engine)


def _tensor(t: trt.ITensor) -> dict[str, Any]:
    return {"name": t.name, "shape": list(t.shape), "dtype": trt_name(t.dtype)}


class OnnxNetworkError(ValueError):
    """An ONNX file that cannot become the network asked for. ``problem`` says what to change:
    ``"parse"`` (the file), ``"plugin_nodes"`` (TorchMish nodes this TensorRT cannot import),
    ``"dtype"`` (the file's input precision), ``"shape"`` (an image size), ``"batch"`` (a batch size)."""

    def __init__(self, message: str, problem: str) -> None:
        super().__init__(message)
        self.problem = problem


def build_onnx_network(
    path: str | Path,
    *,
    batch: tuple[int, int, int] | None = None,
    image_size: tuple[int, int] | None = None,
    dtype: torch.dtype | None = None,
    workspace: int | None = None,
    logger: trt.ILogger | None = None,
) -> BuiltNetwork:
    """The strongly typed network TensorRT's ONNX parser reads from the file at ``path``, with one
    optimization profile where an input has a dynamic dimension.

    ``batch``: (min, opt, max) for a dynamic batch dimension (default 1); a file with a static batch
    must match it. ``image_size``: (H, W) for dynamic height and width dimensions of NCHW inputs.
    ``dtype``: the precision the engine is for; a strongly typed network computes in its inputs'
    dtypes, so every input must already have it. ``workspace``: the workspace limit in bytes.
    Raises ``OnnxNetworkError`` for a file that cannot give that network; ``PluginUnavailableError``
    for TorchMish plugin nodes when no plugin library could be loaded."""
    path = Path(path)
    logger = logger or trt.Logger(trt.Logger.WARNING)
    with allow_tensorrt_without_gpu():
        builder = trt.Builder(logger)
        network = builder.create_network(1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED))
        parser = trt.OnnxParser(network, logger)
        if not parser.parse_from_file(str(path)):
            _refuse(path, parser)
        profile = builder.create_optimization_profile()
        dynamic = False
        for i in range(network.num_inputs):
            tensor = network.get_input(i)
            if dtype is not None and trt_name(tensor.dtype) != _TRT_DTYPES[dtype]:
                wanted = str(dtype).removeprefix("torch.")
                raise OnnxNetworkError(
                    f"{path}: the ONNX input {tensor.name} is {trt_name(tensor.dtype)}; engines are strongly typed, "
                    f"so a {wanted} engine needs an ONNX file exported in {wanted}",
                    "dtype",
                )
            profile.set_shape(tensor.name, *_profile_shapes(path, tensor, batch, image_size))
            dynamic = dynamic or -1 in tuple(tensor.shape)
    # As torch-tensorrt does: a profile where an input has a dynamic dimension, none for a static network.
    profiles = [profile] if dynamic else []

    def make_config() -> trt.IBuilderConfig:
        config = builder.create_builder_config()
        if workspace is not None:
            config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace)
        for p in profiles:
            config.add_optimization_profile(p)
        return config

    return BuiltNetwork(network, builder, make_config, profiles, owner=parser)


def _refuse(path: Path, parser: trt.OnnxParser) -> None:
    errors = [parser.get_error(i) for i in range(parser.num_errors)]
    text = "; ".join(e.desc() for e in errors)
    if any(e.node_operator() == "TorchMish" for e in errors):
        from torch_mish.tensorrt.plugin import load_plugin

        load_plugin()  # raises PluginUnavailableError, saying why, when the library is missing
        raise OnnxNetworkError(
            f"{path}: {trt.__name__} {trt.__version__} cannot import the TorchMish plugin nodes ({text})",
            "plugin_nodes",
        )
    raise OnnxNetworkError(f"{path}: TensorRT's ONNX parser refused the file: {text}", "parse")


def _profile_shapes(
    path: Path, tensor: trt.ITensor, batch: tuple[int, int, int] | None, image_size: tuple[int, int] | None
) -> Sequence[tuple[int, ...]]:
    """(min, opt, max) of one input: its static dimensions, the batch range for a dynamic first one,
    the image size for dynamic height and width."""
    dims = list(tensor.shape)
    if dims and dims[0] != -1 and batch is not None and batch != (dims[0],) * 3:
        raise OnnxNetworkError(
            f"{path}: the input {tensor.name} has a static batch of {dims[0]}; export the file with the batch "
            f"range {':'.join(map(str, batch))}",
            "batch",
        )
    if len(dims) == 4 and image_size is not None:
        for axis, size in zip((2, 3), image_size, strict=True):
            if dims[axis] not in (-1, size):
                asked = f"{image_size[0]}x{image_size[1]}"
                raise OnnxNetworkError(
                    f"{path}: the input {tensor.name} is {dims[2]}x{dims[3]} (HxW), not {asked}", "shape"
                )
            dims[axis] = size
    if -1 in dims[1:]:
        raise OnnxNetworkError(
            f"{path}: the input {tensor.name} has dynamic dimensions {list(tensor.shape)}; give its image size (H, W)",
            "shape",
        )
    return [tuple([n if dims[0] == -1 else dims[0], *dims[1:]]) for n in (batch or (1, 1, 1))]
