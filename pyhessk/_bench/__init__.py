"""Timing and GEMM-ideal helpers shared by ``pyhessk bench`` and the benchmark suite in ``bench/``."""
