"""Baselines run through the same evaluation harness as our pipeline."""
