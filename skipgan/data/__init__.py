"""Data layer: image decoding (8/16-bit, n channels) and train/test splits for anomaly detection.

Tensors are float32 [C, isize, isize] in [-1, 1]. See images.py and datasets.py for the rules and protocols.
"""

from skipgan.data.datasets import ACCEPTED_SPECS, Splits, digits_split_indices, load_splits
from skipgan.data.images import (
    IMAGE_EXTENSIONS,
    CorruptImageError,
    batch_to_tensor,
    is_image_file,
    model_input,
    read_image,
    to_tensor,
)
from skipgan.data.limits import DEFAULT_LIMITS, ImageLimits, ImageTooLargeError

__all__ = [
    "ACCEPTED_SPECS",
    "IMAGE_EXTENSIONS",
    "CorruptImageError",
    "DEFAULT_LIMITS",
    "ImageLimits",
    "ImageTooLargeError",
    "Splits",
    "batch_to_tensor",
    "digits_split_indices",
    "is_image_file",
    "load_splits",
    "model_input",
    "read_image",
    "to_tensor",
]
