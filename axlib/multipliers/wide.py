"""16-bit EvoApprox circuits (mul16u_F6B = MulF6B, mul16u_8VH = Mul8VH of ponzina2022) built from
four 8x8 sub-tables, and their use with an 8-bit operand (ponzina2022's 8/16 layers).

Data README: ``out = (LL[aL,bL] + (LH[aL,bH] << 8) + (HL[aH,bL] << 8) + (HH[aH,bH] << 16)) mod 2^32``
with ``aL = a & 0xFF``, ``aH = a >> 8`` (likewise ``b``), ``a`` the first argument. With an 8-bit
operand in ``a`` (``aH = 0``) a product is two 8x8 table passes over the bytes of ``b``.
"""

from __future__ import annotations

import functools

import numpy as np

from axlib.multipliers.evoapprox import _path

WIDE = ("mul16u_F6B", "mul16u_8VH")
PAPER_NAME = {"mul16u_F6B": "MulF6B", "mul16u_8VH": "Mul8VH"}


@functools.cache
def parts(name: str) -> dict[str, np.ndarray]:
    if name not in WIDE:
        raise ValueError(f"unknown 16-bit circuit {name!r}; available: {list(WIDE)}")
    with np.load(_path("evoapprox_mul16u_F6B_8VH_parts.npz")) as z:
        return {k: z[f"{name}_{k}"].astype(np.int64) for k in ("LL", "LH", "HL", "HH")}


def mul16(name: str, a, b) -> np.ndarray:
    """Element-wise 16x16 approximate product of unsigned ``a`` (first argument) and ``b``."""
    p = parts(name)
    a, b = np.asarray(a, dtype=np.int64), np.asarray(b, dtype=np.int64)
    al, ah, bl, bh = a & 0xFF, a >> 8, b & 0xFF, b >> 8
    out = p["LL"][al, bl] + (p["LH"][al, bh] << 8) + (p["HL"][ah, bl] << 8) + (p["HH"][ah, bh] << 16)
    return out % (1 << 32)


def metrics_8x16(name: str | None, eight_bit: str = "a") -> dict:
    """Exhaustive metrics over the 2^24 pairs with one operand 8-bit (``eight_bit`` = "a" or "b").

    ``name=None`` is the exact multiplier. Returns MRE per Eq. (2) of delaparra2021 (all pairs,
    divisor ``max(1, exact)``), EvoApprox's MRE (pairs with exact != 0), MAE as % of 2^32, worst-case
    error, mean error, in product units.
    """
    small = np.arange(256, dtype=np.int64)
    sum_rel_all = sum_rel_nz = n_nz = sum_abs = 0.0
    sum_err = 0.0
    wce = 0
    for chunk in np.array_split(np.arange(1 << 16, dtype=np.int64), 16):
        a, b = (small[:, None], chunk[None, :]) if eight_bit == "a" else (chunk[None, :], small[:, None])
        exact = a * b
        approx = exact if name is None else mul16(name, a, b)
        e = (approx - exact).astype(np.float64)
        ae = np.abs(e)
        sum_rel_all += float((ae / np.maximum(1, exact)).sum())
        nz = exact != 0
        sum_rel_nz += float((ae[nz] / exact[nz]).sum())
        n_nz += int(nz.sum())
        sum_abs += float(ae.sum())
        sum_err += float(e.sum())
        wce = max(wce, int(ae.max()))
    n = 256 * 65536
    return {"mre_pct": 100 * sum_rel_all / n, "mre_pct_evoapprox": 100 * sum_rel_nz / max(n_nz, 1),
            "mae_pct_of_2^32": 100 * sum_abs / n / 2**32, "mean_error": sum_err / n, "worst_case_error": wce}
