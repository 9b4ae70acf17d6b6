"""The fused screening engine: a trained model's tensors turned into a fixed, preallocated pipeline over the
native ops (see screener.py for the data flow and layers.py for how each convolution runs)."""

from .fold import FoldedConv, FoldedNetwork, fold_conv, fold_model
from .screener import DTYPES, Screener

__all__ = ["DTYPES", "FoldedConv", "FoldedNetwork", "Screener", "fold_conv", "fold_model"]
