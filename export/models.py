"""The name :mod:`inference.graphs` for :mod:`inference.graphs`, where the module lives: the graphs and engines
that serving builds belong to ``inference`` (which imports nothing from ``export``)."""

import sys

from inference import graphs as _module

sys.modules[__name__] = _module
