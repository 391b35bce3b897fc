"""torch_mish.tensorrt.compile: inputs as torch-tensorrt takes them, precision requests it cannot
honour. Without a GPU, compile's own dry run (dryrun=...) is what runs; engines run in test_runtime."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
from tensorrt_helpers import IMAGE, yolo


def _report_inputs(path: Path) -> str:
    match = re.search(r"^\s*Inputs: (.*)$", path.read_text(), re.MULTILINE)
    assert match, path.read_text()[:2000]
    return match.group(1)


@pytest.mark.parametrize("form", ["tensor", "list", "Input"])
def test_one_example_tensor_is_one_input(trt, tmp_path: Path, form: str) -> None:  # noqa: ANN001
    """compile(model, x) with a bare tensor must not hand torch-tensorrt x's rows as inputs."""
    import torch_tensorrt

    import torch_mish.tensorrt as mt

    x = torch.randn(2, 3, IMAGE, IMAGE)
    given = {"tensor": x, "list": [x], "Input": torch_tensorrt.Input.from_tensor(x)}[form]
    mt.compile(yolo(), given, dryrun=str(tmp_path / "r.txt"))
    assert _report_inputs(tmp_path / "r.txt") == f"List[Tensor: (2, 3, {IMAGE}, {IMAGE})@float32]"


def test_ignored_precision_request_warns(trt, tmp_path: Path) -> None:  # noqa: ANN001
    """enabled_precisions does not change a strongly typed engine: say so."""
    import torch_mish.tensorrt as mt

    x = torch.randn(1, 3, IMAGE, IMAGE)
    with pytest.warns(UserWarning, match=r"enabled_precisions=.*is ignored.*model\.half\(\)"):
        mt.compile(yolo(), x, enabled_precisions={torch.float16}, dryrun=str(tmp_path / "a.txt"))
    # A request the model's dtype already meets is no surprise: no warning.
    with warnings_as_errors():
        mt.compile(yolo(torch.float16), x.half(), enabled_precisions={torch.float16}, dryrun=str(tmp_path / "b.txt"))


def test_without_a_gpu_compile_says_so(trt, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: ANN001
    """Without a CUDA device an engine build (no dryrun) fails deep in TensorRT with an empty
    AssertionError: compile refuses first, with the reason and the CPU-side alternatives."""
    import torch_mish.tensorrt as mt

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(RuntimeError, match="no CUDA device here.*inspect.dry_run"):
        mt.compile(yolo(), torch.randn(1, 3, IMAGE, IMAGE))


def warnings_as_errors():  # noqa: ANN201
    import warnings

    class _Ctx:
        def __enter__(self) -> None:
            self.cm = warnings.catch_warnings()
            self.cm.__enter__()
            warnings.filterwarnings("error", message=".*enabled_precisions.*")

        def __exit__(self, *exc: object) -> None:
            self.cm.__exit__(*exc)

    return _Ctx()
