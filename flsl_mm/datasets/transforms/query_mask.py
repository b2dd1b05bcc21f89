"""Query sampling masks of FLSL's student views (FLSL_SPEC §4)."""
from __future__ import annotations

import random

import numpy as np


def query_mask(feature_size: int, window: int, random_sampling: bool = False,
               rng: random.Random | None = None) -> np.ndarray:
    """Boolean mask over the row-major ``F * F`` tokens marking the queries.

    ``grid = F // window``, ``S = grid * window``; the ``S x S`` block is tiled into
    ``window x window`` windows and each contributes one query: its top-left token
    (``random_sampling=False``) or a uniformly random one. When ``F > S`` the block
    sits in one of the four corners, chosen uniformly.

    Returns:
        ``np.ndarray`` of shape ``(F * F,)``, dtype bool, with ``grid**2`` True.
    """
    if window < 1 or feature_size < window:
        raise ValueError(f'query_mask: need 1 <= window <= feature_size, got '
                         f'window={window}, feature_size={feature_size}')
    rng = rng or random
    grid = feature_size // window
    span = grid * window
    free = feature_size - span
    if free > 0:
        top, left = rng.choice([(0, 0), (0, free), (free, 0), (free, free)])
    else:
        top, left = 0, 0
    mask = np.zeros((feature_size, feature_size), dtype=bool)
    for gy in range(grid):
        for gx in range(grid):
            dy, dx = ((rng.randrange(window), rng.randrange(window))
                      if random_sampling else (0, 0))
            mask[top + gy * window + dy, left + gx * window + dx] = True
    return mask.reshape(-1)
