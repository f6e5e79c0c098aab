"""Benchmark data and measures shared by the benches, training, calibration and the demo.

Video I/O for clips, the source videos (fixtures and registry-shipped footage), the edits that
make copies, benchmark building, truth files and retrieval/segment metrics. Nothing here imports
the detector, the models or the command line.
"""
