"""Data: the training sets as tensors and the images the metrics read, both named by data specs."""
from .datasets import DataSpec, Dataset, digits_images, load_dataset, parse_spec
from .image_sources import load_images

__all__ = ["DataSpec", "Dataset", "digits_images", "load_dataset", "load_images", "parse_spec"]
