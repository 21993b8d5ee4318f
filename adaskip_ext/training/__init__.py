"""Training: the schemes' per-step random draws (``draws``) and the trainer (``trainer``)."""
from .draws import SCHEMES, BatchDrawer, TrainingBatch
from .trainer import EMA, TrainConfig, Trainer

__all__ = ["EMA", "SCHEMES", "BatchDrawer", "TrainConfig", "Trainer", "TrainingBatch"]
