"""Published multiplier numbers, each with its source (facts from the papers, never outputs)."""

from __future__ import annotations

import pandas as pd

#: ponzina2022, Table 1 (40 nm): operand widths, MRE (%), power (uW), area (um^2).
PONZINA2022_TABLE1 = pd.DataFrame([
    ("Exact16", "8 x 16", None, 277.5, 622.5),
    ("MulF6B", "8 x 16", 5.9e-5, 237.3, 441.7),
    ("Mul8VH", "8 x 16", 1.9e-3, 137.3, 192.9),
    ("Exact8", "4 x 8", None, 39.9, 94.8),
], columns=["multiplier", "operand_bits", "paper_mre_pct", "paper_power_uW", "paper_area_um2"])
PONZINA2022_SOURCE = "ponzina2022, Table 1"
