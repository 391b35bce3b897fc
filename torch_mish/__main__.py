"""``python -m torch_mish``: the ``torch-mish`` command (see the torch_mish.cli package)."""

import sys

from torch_mish.cli import main

if __name__ == "__main__":  # importing the module (tools that walk the package) runs nothing
    sys.exit(main())
