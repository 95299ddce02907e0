import numpy as np
import pytest

from axlib import multipliers as mul
from axlib.validate import ParameterError
from tests.conftest import have

needs_tables = pytest.mark.skipif(not have("multipliers/evoapprox_mul8u_luts.npz"), reason="EvoApprox tables not in AXLIB_DATA")


def test_exact_tables_and_metrics():
    u, s = mul.exact(8), mul.exact(8, signed=True)
    assert u(np.array([255, 3]), np.array([255, 7])).tolist() == [65025, 21]
    assert s(np.array([-128, -3, 127]), np.array([-128, 5, -1])).tolist() == [16384, -15, -127]
    m = mul.error_metrics(u)
    assert m["mre_pct"] == 0 and m["worst_case_error"] == 0 and m["error_rank"] == 0


def test_mre_follows_eq2_of_delaparra2021():
    # one wrong entry: T[0, 0] = 1 (exact 0 -> divide by max(1, 0) = 1) and T[2, 3] = 5 (exact 6)
    t = np.outer(np.arange(256), np.arange(256))
    t[0, 0], t[2, 3] = 1, 5
    m = mul.error_metrics(mul.Multiplier("toy", t, False, "unsigned", "test", "test"))
    assert m["mre_pct"] == pytest.approx(100 * (1 / 1 + 1 / 6) / 65536)
    assert m["mre_pct_evoapprox"] == pytest.approx(100 * (1 / 6) / (255 * 255))
    assert m["worst_case_error"] == 1 and m["error_rank"] == 2


def test_mre_eq2_pct_literal_reading_by_hand():
    # 2-bit unsigned multiplier: n = 2^(2-1) = 2, Eq. (2) sums magnitudes i, j in 0..2 and divides by n*n = 4
    t = np.outer(np.arange(4), np.arange(4))
    t[1, 1] = 2      # exact 1: relative error 1
    t[2, 2] = 3      # exact 4: relative error 1/4
    t[3, 3] = 0      # exact 9: outside 0..n, ignored by the literal reading, counted by the all-pairs mean
    m = mul.Multiplier("toy2", t, False, "unsigned", "test", "test")
    assert mul.mre_eq2_pct(m) == pytest.approx(100 * (1 + 0.25) / 4)                  # 31.25 %
    assert mul.error_metrics(m)["mre_pct"] == pytest.approx(100 * (1 + 0.25 + 1) / 16)  # 14.0625 %
    assert mul.mre_eq2_pct(mul.exact(8)) == 0
    with pytest.raises(ValueError, match="signed"):
        mul.mre_eq2_pct(mul.exact(8, signed=True))


@needs_tables
def test_mre_eq2_pct_of_mul8u_kem():
    kem = mul.get("evoapprox:mul8u_KEM")
    assert mul.mre_eq2_pct(kem) == pytest.approx(0.553, abs=0.001)
    assert mul.error_metrics(kem)["mre_pct"] == pytest.approx(0.175, abs=0.001)


def test_truncated_multiplier():
    assert np.array_equal(mul.truncated(0).table, mul.exact(8).table)
    t4 = mul.truncated(4)
    e = mul.error_matrix(t4)
    assert (e <= 0).all() and -e.max() == 0
    # the dropped columns 0..3 can hold at most sum_{c<4} (c+1) 2^c = 1+4+12+32 = 49
    assert -e.min() == 49
    assert t4(np.array([15]), np.array([1])).item() == 0  # a_3..a_0 * w_0 all in columns < 4


def test_drum_multiplier():
    assert np.array_equal(mul.drum(8).table, mul.exact(8).table)
    d = mul.drum(4)
    assert d(np.array([15]), np.array([15])).item() == 225  # small operands stay exact
    # 200 = 0b11001000: lead 7, keep 1100 -> 1101 (LSB forced), shift 4 -> 13*16 = 208
    assert d(np.array([200]), np.array([1])).item() == 208
    assert 0 < mul.error_metrics(d)["mre_pct"] < mul.error_metrics(mul.drum(3))["mre_pct"]


def test_sign_magnitude_of_exact_is_exact_signed():
    sm = mul.sign_magnitude(mul.exact(8))
    assert np.array_equal(sm.table, mul.exact(8, signed=True).table)
    assert sm.signed and "sign-magnitude" in sm.convention


def test_user_tables(tmp_path):
    t = np.outer(np.arange(16), np.arange(16)) + 1
    np.save(tmp_path / "mine.npy", t)
    m = mul.from_npy(tmp_path / "mine.npy", signed=False)
    assert m.a_bits == 4 and m(np.array([3]), np.array([4])).item() == 13
    f = mul.from_function(lambda a, w: a * w - (a * w) % 4, bits=4)
    assert f(np.array([3]), np.array([3])).item() == 8
    with pytest.raises(ValueError, match="shape"):
        mul.from_function(lambda a, w: np.zeros(3), bits=4)


def test_registry():
    assert mul.get("drum5").name == "drum5" and mul.get("trunc3").name == "trunc3"
    with pytest.raises(ParameterError, match="allowed"):
        mul.get("wallace9")


@needs_tables
def test_evoapprox_tables_match_the_library_numbers():
    rows = mul.published_evoapprox()
    assert np.array_equal(mul.evoapprox("mul8u_1JFF").table, mul.exact(8).table)
    assert np.array_equal(mul.evoapprox("mul8s_1KV8").table, mul.exact(8, signed=True).table)
    names = mul.evoapprox_names()
    assert len(names) == 53
    for name in names:
        m = mul.evoapprox(name)
        met = mul.error_metrics(m)
        row = rows[name]
        # our exhaustive Eq. (2) MRE equals the data provider's independent computation
        assert met["mre_pct"] == pytest.approx(float(row["calc_mre_pct_all_pairs_max1"]), rel=1e-4, abs=1e-4), name
        # and EvoApprox's own MRE definition reproduces the library's published value (2-3 digits)
        assert met["mre_pct_evoapprox"] == pytest.approx(float(row["lib_mre_pct"]), rel=0.01, abs=0.006), name
        assert met["worst_case_error"] == int(row["calc_wce"]), name


@pytest.mark.skipif(not have("multipliers/evoapprox_mul16u_F6B_8VH_parts.npz"), reason="16-bit parts not in AXLIB_DATA")
def test_16bit_circuits_from_parts():
    from axlib.multipliers import wide

    x = np.arange(256)
    # F6B's high-byte block is the exact mul8_364, so products of multiples of 256 are exact (mod 2^32)
    hi = wide.mul16("mul16u_F6B", (x * 256)[:, None], (x * 256)[None, :])
    assert np.array_equal(hi, (np.outer(x, x) << 16) % (1 << 32))
    m = wide.metrics_8x16("mul16u_F6B", "a")
    assert 0 < m["mre_pct"] < wide.metrics_8x16("mul16u_8VH", "a")["mre_pct"]
    assert wide.metrics_8x16(None, "b")["mre_pct"] == 0
    with pytest.raises(ValueError, match="available"):
        wide.parts("mul16u_XYZ")


def test_error_readings_of_ponzina2022_table1():
    from axlib.multipliers import wide

    m = {"mre_pct": 0.5, "mre_pct_evoapprox": 0.6, "mae_pct_of_2^32": 1e-4}
    r = wide.error_readings(m, lib_mre_pct=0.007, lib_mae_pct=8e-5).set_index("reading")["value"]
    assert r["MRE, all pairs (ours)"] == 0.5 and r["MRE, EvoApprox definition"] == 0.6
    assert r["MRE as a fraction"] == pytest.approx(0.005)
    assert r["MAE / 2^24"] == pytest.approx(1e-4 * 256)       # 2^32 / 2^24 = 256
    assert r["MAE / 2^32 (EvoApprox MAE %)"] == 1e-4
    assert r["MRE, full 16 x 16 (library)"] == 0.007 and r["MAE / 2^32, full 16 x 16 (library)"] == 8e-5


def test_acc01_tables_get_both_mre_readings():
    import pandas as pd

    from axlib.methods import approx_eval

    old = pd.DataFrame({"multiplier": ["fake-quant (exact, float)", "trunc4"], "mre_pct": [0.0, 1.0],
                        "accuracy": [0.9, 0.8]})
    new = approx_eval.with_mre_readings(old)
    assert list(new.columns) == ["multiplier", "mre_pct", "mre_eq2_pct", "accuracy"]
    assert new["mre_eq2_pct"].tolist() == [0.0, pytest.approx(mul.mre_eq2_pct(mul.get("trunc4")))]
    assert new["mre_eq2_pct"].iloc[1] > 0
    assert approx_eval.with_mre_readings(new) is new
