"""Exact emulation of approximate multipliers through lookup tables (LUTs).

Every product ``x * y`` of an integer GEMM or convolution is replaced by ``lut[x + a_offset, y + w_offset]``
and the products are summed exactly in int64. Signed 8-bit tables use offset indexing
(``T[x + 128, y + 128] = mul(x, y)`` for ``x, y`` in [-128, 127], so ``a_offset = w_offset = 128``);
unsigned tables use offset 0.

``lut_gemm`` / ``lut_conv2d`` are the fast numba kernels; ``reference_gemm`` / ``reference_conv2d`` are
plain NumPy implementations with identical results, used to test them. Every kernel checks its inputs
with the shared helpers of :mod:`axlib.kernels.checks` (integer codes, table ranges, finite values, shapes,
stride and padding) before any work.
"""

from axlib.kernels.lut_gemm import lut_conv2d, lut_gemm
from axlib.kernels.reference import reference_conv2d, reference_gemm

__all__ = ["lut_gemm", "lut_conv2d", "reference_gemm", "reference_conv2d"]
