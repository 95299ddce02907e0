"""Torch layers for approximate arithmetic (see ``approx``)."""

from axlib.nn.approx import ApproxLayer, approximate, operand_table, quantize_codes

__all__ = ["ApproxLayer", "approximate", "operand_table", "quantize_codes"]
