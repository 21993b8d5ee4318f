"""Seeds derived from integers: every random draw of sampling and training comes from (seed, …)."""
from __future__ import annotations

import numpy as np


def seed_for(*parts: int) -> int:
    """A 63-bit seed derived from integers (e.g. (seed, batch)); stable across platforms."""
    return int(np.random.SeedSequence([int(p) for p in parts]).generate_state(2, np.uint64)[0] >> 1)
