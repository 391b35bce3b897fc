"""``python -m torch_mish``: the ``torch-mish`` command (see torch_mish.cli)."""

import sys

from torch_mish.cli import main

sys.exit(main())
