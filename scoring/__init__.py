"""The methods ``dupwatch eval`` compares on a benchmark: ours (a bundle), chamfer and vPDQ.

Used by the eval command and by training, which scores its candidate bundles the same way.
"""
