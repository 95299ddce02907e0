"""Stand-ins for the SMApprox multipliers of delaparra2021 (axlib.multipliers.smapprox)."""

import numpy as np
import pytest

from axlib import multipliers as mul
from axlib.multipliers import smapprox as sa
from axlib.validate import ParameterError


def _bit(v, i):
    return (v >> i) & 1


def _bam_direct(a, w, hbl, vbl):
    """Sum of kept partial-product bits, element by element."""
    return sum(_bit(a, i) * _bit(w, j) << (i + j) for i in range(4) for j in range(4) if j >= hbl and i + j >= vbl)


def _kulkarni_direct(a, w):
    def k2(x, y):
        return 7 if (x, y) == (3, 3) else x * y
    al, ah, wl, wh = a & 3, a >> 2, w & 3, w >> 2
    return k2(al, wl) + 4 * k2(al, wh) + 4 * k2(ah, wl) + 16 * k2(ah, wh)


def test_bam_known_values_and_direct_logic():
    assert np.array_equal(sa.bam4(0, 0), np.outer(np.arange(16), np.arange(16)))
    assert sa.bam4(1, 0)[15, 1] == 0          # weight bit 0 row removed
    assert sa.bam4(1, 0)[15, 2] == 30         # row 1 kept
    assert sa.bam4(0, 2)[15, 15] == 225 - 5   # columns 0 (one bit, 1) and 1 (two bits, 2 each) removed
    assert sa.bam4(0, 3)[15, 15] == 225 - 17  # ... and column 2 (three bits, 4 each)
    assert sa.bam4(2, 0)[3, 3] == 0           # w = 3 lives only in rows 0 and 1
    for h, v in ((0, 2), (1, 2), (2, 3), (3, 5)):
        t = sa.bam4(h, v)
        ref = np.array([[_bam_direct(a, w, h, v) for w in range(16)] for a in range(16)])
        assert np.array_equal(t, ref), (h, v)
        assert (t <= np.outer(np.arange(16), np.arange(16))).all()
    with pytest.raises(ParameterError, match="hbl"):
        sa.bam4(4, 0)


def test_kulkarni_block():
    k2 = sa.kulkarni2x2()
    assert k2[3, 3] == 7
    exact2 = np.outer(np.arange(4), np.arange(4))
    assert (k2 != exact2).sum() == 1
    t = sa.kulkarni4()
    assert t[3, 3] == 7 and t[15, 15] == 7 + 28 + 28 + 112 and t[12, 13] == 12 + 112
    assert t[2, 15] == 30                     # no 3x3 sub-product: exact
    rng = np.random.default_rng(1)
    for a, w in rng.integers(0, 16, size=(40, 2)):
        assert t[a, w] == _kulkarni_direct(int(a), int(w))


def test_drum4_values():
    d3 = sa.drum4(3)
    assert d3[7, 7] == 49                     # below 2^3: exact
    assert d3[13, 1] == 14                    # 1101 -> segment 110 -> 111 (LSB forced), shift 1 -> 14
    assert d3[15, 15] == 14 * 14
    d2 = sa.drum4(2)
    assert d2[3, 3] == 9 and d2[12, 1] == 12 and d2[13, 1] == 12 and d2[8, 1] == 12  # 1000 -> 11 << 2
    with pytest.raises(ParameterError, match="DRUM"):
        sa.drum4(4)


def test_catalogue_is_deduplicated_and_named():
    cat = sa.catalogue()
    assert cat[0].name == "exact" and "BAM(hbl=0,vbl=0)" in cat[0].aliases
    tabs = [d.table.tobytes() for d in cat]
    assert len(set(tabs)) == len(tabs)
    assert {d.name for d in cat} >= {"DRUM-2", "DRUM-3", "Kulkarni", "BAM(hbl=1,vbl=0)"}
    assert sa.design("BAM(hbl=1,vbl=1)") is sa.design("BAM(hbl=1,vbl=0)")  # identical tables
    assert all(d.citation for d in cat)
    assert all(d.table.shape == (16, 16) and not d.table.flags.writeable for d in cat)


def test_selection_rule():
    sel = sa.selection()
    chosen = sel[sel["chosen_as"] != ""].set_index("chosen_as")
    assert sorted(chosen.index) == ["0", "1", "2", "3"] and chosen.loc["0", "design"] == "exact"
    assert chosen["design"].is_unique
    # the MRE column equals error_metrics' Eq. (2)-style MRE of the 4x4 table
    for d in sa.catalogue()[:5]:
        m = mul.Multiplier(d.name, d.table, False, "unsigned", "test", "test")
        row = sel[sel["design"] == d.name].iloc[0]
        assert row["mre_pct_4x4"] == pytest.approx(mul.error_metrics(m)["mre_pct"])
    # re-apply the stated rule independently
    targets = {"1": 7.2, "2": 12.6, "3": 12.3}
    taken = {"exact"}
    for t in ("1", "2", "3"):
        free = sel[~sel["design"].isin(taken)]
        best = free.iloc[int(np.argmin((free["mre_pct_4x4"] - targets[t]).abs().to_numpy()))]["design"]
        assert chosen.loc[t, "design"] == best
        taken.add(best)
    st = sa.standins()
    assert list(st) == ["0", "1", "2", "3"] and st["0"].name == "exact"


def test_compose_all_exact_is_exact():
    ex = {d: sa.exact4() for d in "0123"}
    for order in sa.ORDERS:
        t = sa.compose_8x8("0000", ex, order)
        assert np.array_equal(t, np.outer(np.arange(256), np.arange(256)))
    assert np.array_equal(sa.smapprox("0000").table, mul.exact(8).table)


def test_compose_matches_loop_reference():
    rng = np.random.default_rng(0)
    blocks = {d: rng.integers(0, 300, size=(16, 16)) for d in "0123"}
    digits = "1230"
    t = sa.compose_8x8(digits, blocks)
    tr = sa.compose_8x8(digits, blocks, order="msb-first")
    for a, w in rng.integers(0, 256, size=(200, 2)):
        a, w = int(a), int(w)
        al, ah, wl, wh = a % 16, a // 16, w % 16, w // 16
        b1, b2, b3, b4 = (blocks[c] for c in digits)
        ref = int(b1[al, wl]) + 16 * int(b2[al, wh]) + 16 * int(b3[ah, wl]) + 256 * int(b4[ah, wh])
        assert t[a, w] == ref
        b1, b2, b3, b4 = (blocks[c] for c in reversed(digits))
        ref = int(b1[al, wl]) + 16 * int(b2[al, wh]) + 16 * int(b3[ah, wl]) + 256 * int(b4[ah, wh])
        assert tr[a, w] == ref
    assert np.array_equal(sa.compose_8x8("0321", blocks), tr)


def test_mre_eq2_matches_double_loop():
    rng = np.random.default_rng(2)
    t = np.outer(np.arange(8), np.arange(8)) + rng.integers(-3, 4, size=(8, 8))
    n = 4                                          # bits = 3 -> n = 2^2
    ref = 0.0
    for i in range(n + 1):
        for j in range(n + 1):
            ref += abs(int(t[i, j]) - i * j) / max(1, i * j)
    assert sa.mre_eq2(t, 3) == pytest.approx(100 * ref / (n * n))
    assert sa.mre_eq2(mul.exact(8).table, 8) == 0
    assert sa.mre_full(t) == pytest.approx(mul.error_metrics(mul.Multiplier("t", t, False, "u", "t", "t"))["mre_pct"])
    with pytest.raises(ValueError, match="does not cover"):
        sa.mre_eq2(np.zeros((4, 4)), 3)


def test_registry_round_trip_and_published():
    for d in sa.TABLE2_DESIGNS:
        assert f"smapprox:{d}" in mul.names()
    m = mul.get("smapprox:1100")
    assert m.name == "smapprox:1100" and m.family == "SMApprox stand-in" and "STAND-IN" in m.source
    assert np.array_equal(m.table, sa.smapprox("1100").table)
    assert m.published["paper_mre_pct"] == 2.1 and m.published["paper_area_luts"] == 64
    assert m.published["source"] == "delaparra2021, Table 2"
    assert not m.signed and m.table.shape == (256, 256)
    r = sa.smapprox("1100", order="msb-first")
    assert r.name.endswith("@msb-first") and not np.array_equal(r.table, m.table)
    assert np.array_equal(sa.smapprox("3333").table, sa.smapprox("3333", order="msb-first").table)


@pytest.mark.parametrize("bad", ["1104", "110", "11000", "abcd", 1100, None])
def test_bad_digits_raise(bad):
    with pytest.raises(ParameterError, match="expected 4 digits, each 0-3"):
        sa.smapprox(bad)


def test_bad_registry_name_and_order():
    with pytest.raises(ParameterError, match="expected 4 digits"):
        mul.get("smapprox:12")
    with pytest.raises(ParameterError, match="order"):
        sa.compose_8x8("1100", {d: sa.exact4() for d in "0123"}, order="middle")


def test_table2_metrics_and_spearman():
    df = sa.table2_metrics(["lsb-first"])
    assert len(df) == 9 and df.set_index("multiplier").loc["Xilinx Multiplier IP", "mre_full_pct"] == 0
    assert (df.set_index("multiplier").drop("Xilinx Multiplier IP")["mre_eq2_pct"] > 0).all()
    assert sa.spearman_rho([1, 2, 3, 4], [10, 20, 30, 45]) == pytest.approx(1)
    assert sa.spearman_rho([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1)
    assert sa.spearman_rho([1, 2, 3], [1, 3, 2]) == pytest.approx(0.5)
