"""Metrics: the Fréchet distance and batched features (``frechet``), pytorch-fid's InceptionV3
(``inception``) and the shipped digits classifier (``digits_classifier``)."""
from .frechet import extract, frechet_distance, statistics

__all__ = ["extract", "frechet_distance", "statistics"]
