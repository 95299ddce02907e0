"""Torch layers for approximate arithmetic (``approx``), noise injection (``noise``) and the neuron-wise
error models of delaparra2021 (``errmodel``)."""

from axlib.nn.approx import (
    SCHEMES,
    ApproxLayer,
    LayerConfig,
    approximate,
    approximate_layers,
    operand_table,
    quantize_codes,
    scheme_bits,
    with_multiplier,
)

__all__ = ["SCHEMES", "ApproxLayer", "LayerConfig", "approximate", "approximate_layers", "operand_table",
           "quantize_codes", "scheme_bits", "with_multiplier"]
