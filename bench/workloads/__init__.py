"""Benchmark workloads: skyweave (``skyweave_wl``), its peers (``peers``) and the shared kernels."""
