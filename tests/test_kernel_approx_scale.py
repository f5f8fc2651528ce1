"""Selection at scale: facility location over a dense 10,000 x 10,000 float32 kernel (slow; prints its time).

Memory: the kernel itself is 400 MB in float32; facility_location_submodlib makes a float64 copy (800 MB,
its non-negativity check) and a float32 contiguous copy (400 MB) that submodlib copies again internally.
"""

from __future__ import annotations

import time

import numpy as np
import pytest

from delift.selection.submodular import facility_location_submodlib


@pytest.mark.slow
def test_facility_location_on_a_dense_10k_kernel_runs():
    n, budget = 10_000, 3_000  # DELIFT's 30 % budget
    rng = np.random.default_rng(0)
    s = np.clip(rng.normal(0.0, 0.02, size=(n, n)).astype(np.float32), 0.0, None)  # clipped UF: half zeros
    started = time.perf_counter()
    picks, gains = facility_location_submodlib(s, budget)
    seconds = time.perf_counter() - started
    print(f"facility location, dense {n}x{n} float32, budget {budget}: {seconds:.1f} s")
    assert len(picks) == budget == len(set(picks))
    assert all(a >= b - 1e-4 for a, b in zip(gains, gains[1:]))  # lazy greedy: non-increasing gains
