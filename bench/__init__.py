"""Benchmarks: each prints hastack against the peer it replaces, measured in one run."""

import time


def timed(fn):
    """(seconds, result) of ``fn()``."""
    started = time.perf_counter()
    result = fn()
    return time.perf_counter() - started, result
