"""The fused int8 pass of k-center (numba): one read of the quantized pool per pick."""

from __future__ import annotations

import numpy as np
from numba import njit, prange


@njit(parallel=True, fastmath=True, cache=True)
def update_int8(q: np.ndarray, scale: np.ndarray, center: np.ndarray, mind: np.ndarray) -> None:
    """``mind = min(mind, 2 - 2 <x_i, center>)`` with ``x_i = q[i] * scale[i]``, fused, one pass."""
    n, d = q.shape
    for i in prange(n):
        acc = np.float32(0.0)
        for j in range(d):
            acc += np.float32(q[i, j]) * center[j]
        dist = np.float32(2.0) - np.float32(2.0) * acc * scale[i]
        if dist < mind[i]:
            mind[i] = dist
