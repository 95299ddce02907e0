"""Torch layers for approximate arithmetic (see ``approx``)."""

from axlib.nn.approx import (
    SCHEMES,
    ApproxLayer,
    LayerConfig,
    approximate,
    approximate_layers,
    operand_table,
    quantize_codes,
    scheme_bits,
)

__all__ = ["SCHEMES", "ApproxLayer", "LayerConfig", "approximate", "approximate_layers", "operand_table",
           "quantize_codes", "scheme_bits"]
