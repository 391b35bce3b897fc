"""Write a synthetic darknet-format detection dataset of drawn shapes (see torch_mish.darknet.shapes).

python examples/make_shapes.py OUT_DIR [--train 400] [--valid 100] [--size 256] [--seed 0]
"""

from __future__ import annotations

import argparse

from torch_mish.darknet.shapes import SHAPE_CLASSES, make_shapes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("directory")
    parser.add_argument("--train", type=int, default=400, help="training images")
    parser.add_argument("--valid", type=int, default=100, help="validation images")
    parser.add_argument("--size", type=int, default=256, help="image side (each image varies +-25%%)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--classes", type=int, default=len(SHAPE_CLASSES), help=f"1-{len(SHAPE_CLASSES)}")
    parser.add_argument("--max-shapes", type=int, default=6)
    parser.add_argument("--format", choices=("png", "jpg"), default="png")
    args = parser.parse_args()
    data = make_shapes(
        args.directory, args.train, args.valid, args.size, args.seed, args.classes, args.max_shapes, args.format
    )
    print(data)


if __name__ == "__main__":
    main()
