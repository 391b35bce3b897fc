"""What setup.py needs to build torch_mish, kept beside it rather than among the C++ sources: plain
Python, no torch import (setup.py passes in what torch reports).

- ``cuda``: the CUDA toolkit to compile with, and one architecture list for every CUDA source.
- ``tensorrt_plugin``: where the TensorRT headers are, and the plugin libraries built against them.
"""
