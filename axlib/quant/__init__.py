"""Fixed-point quantization of layer inputs and weights (moons2016 §3.1).

- ``fixedpoint``: the n-bit power-of-two-scaled quantizer itself.
- ``layers``: calibration of per-layer ranges, quantization plans (``global`` / ``per_layer``
  rescaling, bits per layer) and a context manager that runs a model quantized.
"""

from axlib.quant.fixedpoint import BITS_RANGE, pow2_exponent, quantize, representable_range
from axlib.quant.layers import (
    MODES,
    LayerQuant,
    calibrate,
    fold_batchnorm,
    layer_names,
    plan,
    quantized,
)

__all__ = [
    "BITS_RANGE",
    "MODES",
    "LayerQuant",
    "calibrate",
    "fold_batchnorm",
    "layer_names",
    "plan",
    "pow2_exponent",
    "quantize",
    "quantized",
    "representable_range",
]
