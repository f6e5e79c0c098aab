"""The name :mod:`inference.tensorrt_builder` for :mod:`inference.tensorrt_builder`, where the module lives: the graphs and engines
that serving builds belong to ``inference`` (which imports nothing from ``export``)."""

import sys

from inference import tensorrt_builder as _module

sys.modules[__name__] = _module
