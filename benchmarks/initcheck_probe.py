"""Does compute-sanitizer's initcheck flag reads of a tensor that torch made with
``.contiguous(memory_format=torch.channels_last)``, whoever reads it? (An open question from #6.)

    compute-sanitizer --tool initcheck python benchmarks/initcheck_probe.py READER

READER is torch_mish, relu (a torch elementwise kernel), clone or sum. If torch's own kernels are flagged
on the same tensor, the report is about how that tensor was written, not about torch_mish's reads.
The script also checks that every element holds the value it should.
"""

from __future__ import annotations

import sys

import torch

import torch_mish  # noqa: F401 - registers torch.ops.mish

READERS = {
    "torch_mish": torch.ops.mish.mish,
    "relu": torch.relu,
    "clone": lambda t: t.clone(),
    "sum": lambda t: t.sum(),
}


def main() -> None:
    reader = READERS[sys.argv[1]]
    x = torch.randn(2, 3, 5, 7, device="cuda")  # 210 elements: a vector body and a scalar tail
    y = x.contiguous(memory_format=torch.channels_last)
    assert torch.equal(y.cpu(), x.cpu()) and y.is_contiguous(memory_format=torch.channels_last)
    torch.cuda.synchronize()
    reader(y)
    torch.cuda.synchronize()
    print(f"{sys.argv[1]}: read a channels_last copy of {y.numel()} elements")


if __name__ == "__main__":
    main()
