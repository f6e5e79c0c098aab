"""dupwatch: streaming near-duplicate video detection.

The work is split into top-level packages that follow the data flow
ingest → inference → index/detect → alerts (see README): ``ingest``, ``inference``,
``export``, ``training``, ``index``, ``detect``, ``bench``. This package holds what
they share: configuration, the command line, paths.
"""

__version__ = "0.1.0"
