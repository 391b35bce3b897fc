"""Draw benchmarks/results/plots/kernels.png from kernels.csv (runs anywhere; matplotlib needed).

python benchmarks/plot.py
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
STYLE = {
    "torch_mish": ("tab:red", "-"),
    "F.mish": ("tab:blue", "-"),
    "torch.compile(F.mish)": ("tab:purple", "--"),
    "composed": ("tab:gray", ":"),
    "relu": ("black", "-."),
}


def main() -> None:
    rows = list(csv.DictReader(open(RESULTS / "kernels.csv")))
    env = json.loads((RESULTS / "kernels.env.json").read_text())
    dtypes = ["float32", "float16", "bfloat16"]
    directions = ["forward", "backward", "forward+backward"]
    fig, axes = plt.subplots(len(directions), len(dtypes), figsize=(14, 10), sharex=True, sharey=True)
    for i, direction in enumerate(directions):
        for j, dtype in enumerate(dtypes):
            ax = axes[i][j]
            for impl, (color, style) in STYLE.items():
                pts = [
                    (int(r["n"]), float(r["pct_of_copy"]))
                    for r in rows
                    if r["impl"] == impl and r["dtype"] == dtype and r["direction"] == direction
                ]
                if pts:
                    xs, ys = zip(*sorted(pts), strict=True)
                    ax.plot(xs, ys, style, color=color, marker="o", ms=3, label=impl)
            ax.set_xscale("log", base=2)
            ax.set_ylim(0, 110)
            ax.grid(alpha=0.3)
            ax.set_title(f"{dtype}, {direction}", fontsize=10)
            if j == 0:
                ax.set_ylabel("% of copy bandwidth")
            if i == len(directions) - 1:
                ax.set_xlabel("elements")
    axes[0][0].legend(fontsize=8)
    fig.suptitle(
        f"Mish kernels on {env['device']} (copy bandwidth {env['copy_bandwidth_GBps']} GB/s), "
        f"torch {env['torch']}, {env['date']}"
    )
    fig.tight_layout()
    out = RESULTS / "plots" / "kernels.png"
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=90)
    print(out)


if __name__ == "__main__":
    main()
