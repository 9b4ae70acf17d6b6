"""int8 post-training quantisation (issue 23): the int8 semantics (int8.py) and their calibration on the model's
own normal images (calibrate.py). `skipgan quantize` (cli/quantize.py) writes an int8 model file."""

from .int8 import PRECISION, Int8Params, conv_layers, file_precision, quantized

__all__ = ["PRECISION", "Int8Params", "conv_layers", "file_precision", "quantized"]
