"""Data: the training sets as tensors and the images the metrics read."""
from .datasets import Dataset, digits_images, load_dataset

__all__ = ["Dataset", "digits_images", "load_dataset"]
