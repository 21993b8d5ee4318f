"""Sampling in parts on disk: one file per finished batch, so a run can be sharded over ranks
and resumed after it was killed, and the parts merge into one set with no gap and no duplicate.

``OUT/parts/`` holds ``run.json`` (the settings the parts were drawn with) and
``batch-NNNNNN.npy`` (uint8 (B, H, W, C)), each written atomically: a part exists whole or not
at all. Batch b's images depend only on (seed, b) and the settings, so whichever rank or run
draws it, the merged set is the same.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np

from ..io_utils import UserFacingError, atomic_path


class PartStore:
    """The finished batches of one sampling run under ``folder``."""

    def __init__(self, folder: Path, settings: dict, num_batches: int) -> None:
        self.folder, self.settings, self.num_batches = folder, settings, num_batches

    def part(self, batch: int) -> Path:
        return self.folder / f"batch-{batch:06d}.npy"

    def prepare(self, main: bool) -> None:
        """Rank 0 creates the folder and its run.json; every rank checks that parts already
        there were drawn with the same settings (else resuming would mix two runs)."""
        record = self.folder / "run.json"
        if main and not record.exists():
            with atomic_path(record) as tmp:
                tmp.write_text(json.dumps(self.settings, indent=1, sort_keys=True) + "\n")

    def check(self) -> None:
        record = self.folder / "run.json"
        try:
            stored = json.loads(record.read_text())
        except (OSError, ValueError) as error:
            raise UserFacingError(f"{record}: unreadable ({error}); remove {self.folder} to start over") from None
        if stored != json.loads(json.dumps(self.settings)):
            changed = sorted(k for k in set(stored) | set(self.settings) if stored.get(k) != self.settings.get(k))
            raise UserFacingError(f"{self.folder} holds parts of a run with other settings "
                                  f"({', '.join(changed)}); pass --overwrite to start over")

    def done(self) -> set[int]:
        return {b for b in range(self.num_batches) if self.part(b).exists()}

    def write(self, batch: int, images: np.ndarray) -> None:
        with atomic_path(self.part(batch)) as tmp:
            with open(tmp, "wb") as handle:
                np.save(handle, images)

    def read(self, batch: int) -> np.ndarray:
        try:
            with open(self.part(batch), "rb") as handle:
                return np.load(handle)
        except (OSError, ValueError) as error:
            raise UserFacingError(f"{self.part(batch)}: unreadable part ({error}); delete it to redraw it") from None

    def merge(self, num_samples: int) -> np.ndarray:
        """Every batch in order, cut to ``num_samples``: (N, H, W, C) uint8."""
        missing = sorted(set(range(self.num_batches)) - self.done())
        if missing:
            raise UserFacingError(f"{self.folder}: batches {missing[:5]} are missing")
        return np.concatenate([self.read(b) for b in range(self.num_batches)])[:num_samples]

    def remove(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)
