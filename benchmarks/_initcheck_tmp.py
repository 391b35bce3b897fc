import sys, torch, torch_mish
sys.path.insert(0, "tests")
from helpers import random_inputs
g = torch.Generator().manual_seed(0)
base = random_inputs(3876, g).to(device="cuda", dtype=torch.float32)
torch.cuda.synchronize()
nchw = base[: 1938].reshape(2, 3, 17, 19)
cases = {
    "channels_last": lambda: nchw.contiguous(memory_format=torch.channels_last),
    "transposed": lambda: base.reshape(34, 114).t(),
    "strided_slice": lambda: base[::3],
    "offset": lambda: base[1:1001],
    "expanded": lambda: base[:19].reshape(1, 19).expand(7, 19),
    "0-d": lambda: base[5].clone(),
    "fresh_randn_cuda": lambda: torch.randn(1000, device="cuda"),
}
for name, make in cases.items():
    x = make(); torch.cuda.synchronize()
    print(f"### {name} start", flush=True)
    y = torch.ops.mish.mish(x); torch.cuda.synchronize()
    print(f"### {name} done", flush=True)
