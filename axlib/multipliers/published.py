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

#: delaparra2021, Table 1 (quoted from SMApproxLib): the 4x4 base designs 0..3 of the SMApprox
#: multipliers, Xilinx FPGA. LUTs, latency (ns), power (mW), MRE (%), printed as is. Design "0" is
#: called the accurate design in the text, yet the table prints an MRE of 9 % for it.
DELAPARRA2021_TABLE1 = pd.DataFrame([
    ("0", 12, 6.8, 198, 9.0),
    ("1", 12, 6.1, 180, 7.2),
    ("2", 7, 5.2, 192, 12.6),
    ("3", 7, 5.5, 192, 12.3),
], columns=["design", "paper_luts", "paper_latency_ns", "paper_power_mW", "paper_mre_pct"])
DELAPARRA2021_TABLE1_SOURCE = "delaparra2021, Table 1 (from SMApproxLib)"

#: delaparra2021, Table 2: the 8x8 SMApprox multipliers (digit k = design of 4x4 block k) and the
#: Xilinx Multiplier IP baseline. MRE (%) by Eq. (2), power (W), area (LUTs).
DELAPARRA2021_TABLE2 = pd.DataFrame([
    ("1100", 2.1, 0.221, 64),
    ("2200", 3.8, 0.220, 62),
    ("3300", 3.6, 0.220, 62),
    ("1110", 4.0, 0.220, 64),
    ("3330", 6.4, 0.219, 59),
    ("2220", 6.7, 0.219, 59),
    ("3333", 13.6, 0.216, 54),
    ("2222", 16.6, 0.217, 52),
    ("Xilinx Multiplier IP", 0.0, 0.344, 64),
], columns=["multiplier", "paper_mre_pct", "paper_power_W", "paper_area_luts"])
DELAPARRA2021_TABLE2_SOURCE = "delaparra2021, Table 2"
