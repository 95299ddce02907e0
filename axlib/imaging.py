"""Image kernels on explicit floating-point functional units (FUs), for akhlaghi2020 thesis §2.4 / §2.7.1.

What is here:

- **Images** (:func:`load_images`, :func:`make_dataset`): natural grayscale photographs shipped inside the
  scikit-image wheel (no download), a stand-in for the thesis's Caltech-101 images. Each image is cut into
  non-overlapping ``tile x tile`` patches (at most ``max_tiles`` per image, chosen with a seeded generator),
  and the patches are split, seeded, into ``profile`` / ``tune`` / ``eval`` sets in the thesis's proportions
  (§2.7.1: 10 % profiling, 30 % for the error-rate search; the rest here evaluates).
- **Kernels** (:func:`run_kernel`): Sobel, Roberts, Prewitt, Scharr and Sharpen written as sequences of
  float32 FU operations ``ADD(a, b) = a + b``, ``MUL(a, b) = a * b``, ``MAC(a, b, c) = a * b + c`` and
  ``SQRT(a)``, the four units of thesis §2.4 / Table 2.1. Sobel follows the AMD APP SDK kernel the thesis
  adopts (±1 taps as ADD, ±2 taps as MAC, magnitude halved); the other gradient kernels are mask
  convolutions (first non-zero tap MUL, the rest MAC) followed by the magnitude ``SQRT(MAC(Gx, Gx,
  MUL(Gy, Gy)))`` and a MUL by a scale; Sharpen is a mask convolution only (no SQRT: see
  :data:`KERNEL_UNITS`). Subtraction is an ADD of the negated operand (a sign flip, free in hardware). Every
  kernel works on a batch of images ``(N, H, W)`` uint8 at once and returns the ``(N, H-2, W-2)``
  (Roberts: ``(N, H-1, W-1)``) interior as uint8 (truncated towards zero and saturated, as OpenCL's
  ``convert_uint`` plus an 8-bit image write do).
- **The FU hook** (:class:`Datapath`): every FU call of a kernel goes through :meth:`Datapath.call`, which
  (a) profiles: keeps the 64-bit input key and the output of every execution, (b) injects random errors
  at a per-FU rate, seeded, and (c) serves a FU from a :class:`~axlib.kernels.bloom.BloomFunctionUnit`
  (hit: stored output; miss: exact result). It also counts calls, hits, wrong outputs and injected errors,
  and the range of exact outputs per FU.
- :func:`psnr` per image against the exact output.

Keys (:func:`fu_keys`): the float32 bit patterns of the operands, combined into one 64-bit integer by a
splitmix64 step (:func:`mix64`, a bijection of uint64): for one and two operands the key is a bijective
image of the concatenated words, so distinct input patterns never share a key; for MAC's three operands
(96 bits) the key is a fingerprint, distinct for distinct patterns except with probability ~ P^2 / 2^65
for P distinct patterns (< 1e-6 for the pattern counts here). The hardware of Fig. 2.1 hashes the raw
operand bits; the mixing lets one 8-byte Bloom-filter key hold up to three operands and keeps the
all-zero pattern away from key 0, which H3 hashing sends to address 0 in every hash function.

Error injection (thesis §2.4: "error magnitude set conservatively to its maximum"): with probability
``rate`` an execution's output is replaced by

- ``"max"`` (default): the end of that FU's output range ``[lo, hi]`` farthest from the exact result. The
  range is the one observed on the profiling images; a Bloom-filter false positive returns one of the
  stored outputs, which lie in that range, so this is the largest error a false hit can make;
- ``"uniform"``: a value drawn uniformly from ``[lo, hi]``;
- ``"bitflip"``: the exact result with one uniformly chosen bit of its float32 word flipped.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from axlib import validate
from axlib.validate import ParameterError

FU_OPS = ("ADD", "MUL", "MAC", "SQRT")
ARITY = {"ADD": 2, "MUL": 2, "MAC": 3, "SQRT": 1}
KERNELS = ("Sobel", "Roberts", "Prewitt", "Scharr", "Sharpen")
ERROR_MODES = ("max", "uniform", "bitflip")
SPLITS = ("profile", "tune", "eval")
SPLIT_BY = ("tile", "image")

#: Natural photographs inside the scikit-image wheel (``skimage.data``; the loaders that need ``pooch``
#: and a download are left out, as are synthetic or binary images). ``stereo_motorcycle`` = its left view.
IMAGE_NAMES = ("astronaut", "brick", "camera", "cell", "chelsea", "clock", "coffee", "coins", "grass", "gravel",
               "hubble_deep_field", "immunohistochemistry", "moon", "page", "retina", "rocket",
               "stereo_motorcycle", "text")

#: Mask convolutions (rows top -> bottom, columns left -> right): (Gx, Gy) for gradient kernels.
MASKS = {
    "Roberts": (np.array([[1, 0], [0, -1]]), np.array([[0, 1], [-1, 0]])),
    "Prewitt": (np.array([[-1, 0, 1]] * 3), np.array([[-1, 0, 1]] * 3).T),
    "Scharr": (np.array([[-3, 0, 3], [-10, 0, 10], [-3, 0, 3]]), np.array([[-3, 0, 3], [-10, 0, 10], [-3, 0, 3]]).T),
    "Sobel": (np.array([[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]]), np.array([[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]]).T),
    "Sharpen": (np.array([[0, -1, 0], [-1, 5, -1], [0, -1, 0]]),),
}

#: Output scale of the gradient kernels: 4 / sum|Gx|, which is the AMD SDK Sobel's division by 2 and
#: puts the other gradients on the same footing.
SCALE = {name: 4.0 / float(np.abs(m[0]).sum()) for name, m in MASKS.items() if len(m) == 2}

#: FUs each kernel uses here. Thesis Table 2.1 lists ADD only for Sobel (as here) and MUL, MAC, SQRT for
#: the others; Sharpen has no square root here (a sharpening mask has none), so its SQRT is absent.
KERNEL_UNITS = {"Sobel": ("ADD", "MUL", "MAC", "SQRT"), "Roberts": ("MUL", "MAC", "SQRT"),
                "Prewitt": ("MUL", "MAC", "SQRT"), "Scharr": ("MUL", "MAC", "SQRT"), "Sharpen": ("MUL", "MAC")}


# --------------------------------------------------------------------------- images and splits


def _gray_u8(img: np.ndarray) -> np.ndarray:
    from skimage.color import rgb2gray

    img = np.asarray(img)
    if img.ndim == 3:
        img = rgb2gray(img[..., :3])  # float in [0, 1], ITU-R BT.709 luma
        return np.clip(np.round(img * 255.0), 0, 255).astype(np.uint8)
    if img.dtype != np.uint8:
        raise ValueError(f"unexpected grayscale dtype {img.dtype}")
    return img


def load_images(names: Sequence[str] = IMAGE_NAMES) -> dict[str, np.ndarray]:
    """Grayscale uint8 images ``(H, W)`` by name from ``skimage.data`` (files inside the wheel; no network)."""
    import skimage.data

    names = validate.choices("images", names, IMAGE_NAMES)
    out = {}
    for name in names:
        img = getattr(skimage.data, name)()
        out[name] = _gray_u8(img[0] if isinstance(img, tuple) else img)
    return out


@dataclass(frozen=True)
class ImageSet:
    """Tiles ``(N, S, S)`` uint8 with, per tile, its image name, (row, col) origin and split."""

    tiles: np.ndarray
    table: pd.DataFrame  # columns: tile, image, row, col, split

    def split(self, name: str) -> np.ndarray:
        validate.choice("split", name, SPLITS)
        return self.tiles[(self.table["split"] == name).to_numpy()]

    def counts(self) -> pd.DataFrame:
        """Tiles and distinct images per split."""
        g = self.table.groupby("split", sort=False)
        return pd.DataFrame({"tiles": g.size(), "images": g["image"].nunique()}).reindex(list(SPLITS)).reset_index()


def check_dataset_params(tile, max_tiles, fractions, split_by, seed, images=IMAGE_NAMES) -> None:
    validate.integer("tile", tile, 8, 1024)
    validate.integer("max_tiles", max_tiles, 1, 10_000)
    fr = validate.as_list("fractions", fractions)
    if len(fr) != 2 or any(isinstance(f, bool) or not isinstance(f, int | float) or not 0 < f < 1 for f in fr) \
            or sum(fr) >= 1:
        raise ParameterError(f"parameter fractions={fractions!r} must be [profile, tune], two numbers in (0, 1) "
                             "with a sum below 1 (the rest is the evaluation split)")
    validate.choice("split_by", split_by, SPLIT_BY)
    validate.integer("seed", seed, 0, 2**31)
    validate.choices("images", images, IMAGE_NAMES)


def make_dataset(tile: int = 64, max_tiles: int = 32, fractions=(0.1, 0.3), split_by: str = "tile", seed: int = 0,
                 images: Sequence[str] = IMAGE_NAMES) -> ImageSet:
    """Seeded tiling and split (deterministic for given arguments).

    Per image: every non-overlapping ``tile x tile`` position (row-major), of which a seeded random
    ``max_tiles`` are kept. Split: a seeded permutation of the tiles (``split_by="tile"``) or of the images
    (``"image"``: all tiles of an image share a split); the first ``round(fractions[0] * count)`` items
    (at least one) profile, the next ``round(fractions[1] * count)`` (at least one) tune, the rest evaluate.
    """
    check_dataset_params(tile, max_tiles, fractions, split_by, seed, images)
    rng = np.random.default_rng([seed, tile, max_tiles])
    tiles, rows = [], []
    for name, img in load_images(images).items():
        pos = [(r, c) for r in range(0, img.shape[0] - tile + 1, tile) for c in range(0, img.shape[1] - tile + 1, tile)]
        for i in np.sort(rng.permutation(len(pos))[:max_tiles]):
            r, c = pos[i]
            tiles.append(img[r:r + tile, c:c + tile])
            rows.append({"image": name, "row": r, "col": c})
    if not tiles:
        raise ParameterError(f"parameter tile={tile} is larger than every image; no tile fits")
    table = pd.DataFrame(rows)
    units = table.index.to_numpy() if split_by == "tile" else np.unique(table["image"])
    order = units[rng.permutation(len(units))]
    n = len(units)
    n_prof = max(1, round(fractions[0] * n))
    n_tune = max(1, round(fractions[1] * n))
    if n_prof + n_tune >= n:
        raise ParameterError(f"{n} {split_by}s are too few for profile/tune/eval splits with fractions {list(fractions)}")
    label = dict(zip(order, ["profile"] * n_prof + ["tune"] * n_tune + ["eval"] * (n - n_prof - n_tune)))
    key = table.index if split_by == "tile" else table["image"]
    table["split"] = [label[u] for u in key]
    table.insert(0, "tile", np.arange(len(table)))
    return ImageSet(np.stack(tiles), table)


# --------------------------------------------------------------------------- keys


_GAMMA = np.uint64(0x9E3779B97F4A7C15)
_M1, _M2 = np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB)


def mix64(x: np.ndarray) -> np.ndarray:
    """splitmix64 step (add the golden gamma, then the finaliser), a bijection of uint64 (wrapping arithmetic).

    The added constant matters: H3 hashes the all-zero key to address 0 in every hash function, so an input
    pattern of zeros (the most frequent one in images) must not become key 0.
    """
    x = np.asarray(x, dtype=np.uint64)
    with np.errstate(over="ignore"):
        x = x + _GAMMA
        x = (x ^ (x >> np.uint64(30))) * _M1
        x = (x ^ (x >> np.uint64(27))) * _M2
    return x ^ (x >> np.uint64(31))


def float_bits(x) -> np.ndarray:
    """float32 bit patterns as uint64."""
    return np.ascontiguousarray(np.asarray(x, dtype=np.float32)).view(np.uint32).astype(np.uint64)


def fu_keys(*operands) -> np.ndarray:
    """64-bit input key of each FU execution (operands broadcast; see the module docstring)."""
    if not 1 <= len(operands) <= 3:
        raise ParameterError(f"fu_keys takes 1 to 3 operands, got {len(operands)}")
    words = [float_bits(o) for o in np.broadcast_arrays(*[np.asarray(o, dtype=np.float32) for o in operands])]
    if len(words) == 1:
        return mix64(words[0])
    key = mix64((words[0] << np.uint64(32)) | words[1])
    return key if len(words) == 2 else mix64(key ^ words[2])


# --------------------------------------------------------------------------- the FU hook


def _exact(op: str, operands: tuple) -> np.ndarray:
    f32 = [np.asarray(o, dtype=np.float32) for o in operands]
    with np.errstate(invalid="ignore", over="ignore"):
        if op == "ADD":
            return np.add(f32[0], f32[1], dtype=np.float32)
        if op == "MUL":
            return np.multiply(f32[0], f32[1], dtype=np.float32)
        if op == "MAC":  # two roundings (multiply, then add), as an unfused GPU MAD
            return np.add(np.multiply(f32[0], f32[1], dtype=np.float32), f32[2], dtype=np.float32)
        return np.sqrt(f32[0], dtype=np.float32)


def _rates(error_rates) -> dict[str, float]:
    if error_rates is None:
        return {}
    if not isinstance(error_rates, Mapping):
        raise ParameterError(f"parameter error_rates={error_rates!r} must be a mapping FU -> rate, FU in {list(FU_OPS)}")
    out = {}
    for op, r in error_rates.items():
        validate.choice("error_rates FU", op, FU_OPS)
        out[op] = validate.number(f"error_rates[{op!r}]", r, 0.0, 1.0)
    return out


@dataclass
class FUStats:
    """Counts of one FU over all its executions in a :class:`Datapath`."""

    calls: int = 0
    hits: int = 0      # served from a Bloom function unit
    wrong: int = 0     # served with a value different from the exact result
    injected: int = 0  # outputs replaced by an injected error
    lo: float = np.inf   # range of the exact outputs
    hi: float = -np.inf


@dataclass
class Datapath:
    """The single hook every FU execution of a kernel goes through (see the module docstring).

    Args:
        error_rates: FU -> probability in [0, 1] that an execution's output is replaced by an error.
        error_mode: ``"max"``, ``"uniform"`` or ``"bitflip"``.
        ranges: FU -> (lo, hi) output range, needed by ``"max"`` and ``"uniform"`` for every FU with a rate > 0.
        units: FU -> BloomFunctionUnit (keys from :func:`fu_keys`): a hit returns the stored output.
        profile: keep every execution's key and exact output (:meth:`profile_arrays`).
        seed: seeds the error generator; the same seed and call sequence give the same errors.
    """

    error_rates: Mapping | None = None
    error_mode: str = "max"
    ranges: Mapping | None = None
    units: Mapping | None = None
    profile: bool = False
    seed: int = 0
    stats: dict = field(default_factory=dict)
    _keys: dict = field(default_factory=dict, repr=False)
    _outs: dict = field(default_factory=dict, repr=False)

    def __post_init__(self):
        self.error_rates = _rates(self.error_rates)
        validate.choice("error_mode", self.error_mode, ERROR_MODES)
        validate.integer("seed", self.seed, 0, 2**63)
        self.ranges = dict(self.ranges or {})
        self.units = dict(self.units or {})
        for op in self.units:
            validate.choice("units FU", op, FU_OPS)
        if self.error_mode != "bitflip":
            missing = [op for op, r in self.error_rates.items() if r > 0 and op not in self.ranges]
            if missing:
                raise ParameterError(f"error_mode={self.error_mode!r} needs an output range for FU(s) {missing}; "
                                     "pass ranges={FU: (lo, hi)} (e.g. from output_ranges)")
        self.rng = np.random.default_rng(self.seed)
        self.stats = {op: FUStats() for op in FU_OPS}

    # the four units --------------------------------------------------------------------------
    def add(self, a, b):
        return self.call("ADD", a, b)

    def mul(self, a, b):
        return self.call("MUL", a, b)

    def mac(self, a, b, c):
        return self.call("MAC", a, b, c)

    def sqrt(self, a):
        return self.call("SQRT", a)

    # the hook --------------------------------------------------------------------------------
    def call(self, op: str, *operands) -> np.ndarray:
        """Execute FU ``op`` elementwise on the (broadcast) operands: exact, then served, then injected."""
        if len(operands) != ARITY[op]:
            raise ParameterError(f"FU {op} takes {ARITY[op]} operands, got {len(operands)}")
        exact = _exact(op, operands)
        st = self.stats[op]
        st.calls += exact.size
        if exact.size:
            st.lo = min(st.lo, float(np.nanmin(exact)))
            st.hi = max(st.hi, float(np.nanmax(exact)))
        keys = fu_keys(*operands) if (self.profile or op in self.units) else None
        if self.profile:
            self._keys.setdefault(op, []).append(keys.reshape(-1))
            self._outs.setdefault(op, []).append(exact.reshape(-1))
        out = exact
        if op in self.units:
            res = self.units[op].query(keys)
            out = np.where(res.hit, res.values.astype(np.float32), exact)
            st.hits += int(res.hit.sum())
            st.wrong += int((res.hit & (out != exact) & ~(np.isnan(out) & np.isnan(exact))).sum())
        rate = self.error_rates.get(op, 0.0)
        if rate > 0:
            out = self._inject(op, out, rate)
        return out

    def _inject(self, op: str, out: np.ndarray, rate: float) -> np.ndarray:
        mask = self.rng.random(out.shape) < rate
        n = int(mask.sum())
        self.stats[op].injected += n
        if not n:
            return out
        out = out.copy()
        v = out[mask]
        if self.error_mode == "bitflip":
            bits = v.view(np.uint32) ^ (np.uint32(1) << self.rng.integers(0, 32, n).astype(np.uint32))
            out[mask] = bits.view(np.float32)
            return out
        lo, hi = (np.float32(x) for x in self.ranges[op])
        if self.error_mode == "max":
            out[mask] = np.where(np.abs(v - lo) >= np.abs(v - hi), lo, hi)
        else:
            out[mask] = self.rng.uniform(lo, hi, n).astype(np.float32)
        return out

    # results ---------------------------------------------------------------------------------
    def profile_arrays(self, op: str) -> tuple[np.ndarray, np.ndarray]:
        """All profiled (keys uint64, exact outputs float32) of FU ``op``, in call order."""
        if not self.profile:
            raise ParameterError("this Datapath was created with profile=False")
        if op not in self._keys:
            return np.zeros(0, np.uint64), np.zeros(0, np.float32)
        return np.concatenate(self._keys[op]), np.concatenate(self._outs[op])

    def stats_table(self) -> pd.DataFrame:
        rows = [{"fu": op, **vars(s)} for op, s in self.stats.items() if s.calls]
        return pd.DataFrame(rows, columns=["fu", "calls", "hits", "wrong", "injected", "lo", "hi"])


# --------------------------------------------------------------------------- kernels


def _taps(x: np.ndarray, shape: tuple[int, int]):
    """Views of the neighbours: taps[(r, c)] = x[:, r:r+H', c:c+W'] for a mask of ``shape`` (valid region)."""
    kh, kw = shape
    h, w = x.shape[1] - kh + 1, x.shape[2] - kw + 1
    return {(r, c): x[:, r:r + h, c:c + w] for r in range(kh) for c in range(kw)}


def _mask_conv(fu: Datapath, taps: dict, mask: np.ndarray) -> np.ndarray:
    """sum_{r,c} mask[r,c] * x[r,c] over the non-zero taps in raster order: MUL for the first, MAC for the rest."""
    nz = [(rc, float(mask[rc])) for rc in zip(*np.nonzero(mask))]
    acc = fu.mul(np.float32(nz[0][1]), taps[nz[0][0]])
    for rc, w in nz[1:]:
        acc = fu.mac(np.float32(w), taps[rc], acc)
    return acc


def _sobel_sdk(fu: Datapath, p: dict) -> tuple[np.ndarray, np.ndarray]:
    """Gx, Gy of the AMD APP SDK Sobel kernel: ±1 taps by ADD, ±2 taps by MAC (sign flips are free)."""
    gx = fu.add(p[0, 2], -p[0, 0])
    gx = fu.mac(np.float32(2), p[1, 2], gx)
    gx = fu.mac(np.float32(-2), p[1, 0], gx)
    gx = fu.add(gx, p[2, 2])
    gx = fu.add(gx, -p[2, 0])
    gy = fu.add(p[2, 0], -p[0, 0])
    gy = fu.mac(np.float32(2), p[2, 1], gy)
    gy = fu.mac(np.float32(-2), p[0, 1], gy)
    gy = fu.add(gy, p[2, 2])
    gy = fu.add(gy, -p[0, 2])
    return gx, gy


def to_u8(v: np.ndarray) -> np.ndarray:
    """float32 -> uint8: truncation towards zero, saturation to [0, 255]; NaN -> 0."""
    with np.errstate(invalid="ignore"):  # signalling NaNs from bit flips
        v = np.nan_to_num(np.asarray(v, dtype=np.float64), nan=0.0, posinf=255.0, neginf=0.0)
    return np.clip(np.trunc(v), 0, 255).astype(np.uint8)


def check_images(images) -> np.ndarray:
    x = np.asarray(images)
    if x.ndim == 2:
        x = x[None]
    if x.ndim != 3 or x.dtype != np.uint8 or min(x.shape[1:]) < 3:
        raise ParameterError(f"images must be uint8 of shape (N, H, W) or (H, W) with H, W >= 3; got {x.dtype} {x.shape}")
    return x


def kernel_float(name: str, images, fu: Datapath | None = None) -> np.ndarray:
    """The kernel's float32 result before conversion to uint8, shape (N, H', W')."""
    validate.choice("kernel", name, KERNELS)
    fu = Datapath() if fu is None else fu
    x = check_images(images).astype(np.float32)
    masks = MASKS[name]
    p = _taps(x, masks[0].shape)
    if name == "Sharpen":
        return _mask_conv(fu, p, masks[0])
    gx, gy = _sobel_sdk(fu, p) if name == "Sobel" else (_mask_conv(fu, p, masks[0]), _mask_conv(fu, p, masks[1]))
    mag = fu.sqrt(fu.mac(gx, gx, fu.mul(gy, gy)))
    return fu.mul(mag, np.float32(SCALE[name]))


def run_kernel(name: str, images, fu: Datapath | None = None) -> np.ndarray:
    """Output image(s) uint8 ``(N, H', W')`` of kernel ``name`` with every operation on ``fu`` (exact if None)."""
    return to_u8(kernel_float(name, images, fu))


def op_counts(name: str, height: int = 3, width: int = 3) -> dict[str, int]:
    """FU executions per output pixel (from one exact run on a minimal image)."""
    validate.choice("kernel", name, KERNELS)
    fu = Datapath()
    kernel_float(name, np.zeros((1, height, width), np.uint8), fu)
    pixels = (height - MASKS[name][0].shape[0] + 1) * (width - MASKS[name][0].shape[1] + 1)
    return {op: s.calls // pixels for op, s in fu.stats.items() if s.calls}


def output_ranges(name: str, images) -> dict[str, tuple[float, float]]:
    """(lo, hi) of every FU's exact outputs when kernel ``name`` runs on ``images``."""
    fu = Datapath()
    kernel_float(name, images, fu)
    return {op: (s.lo, s.hi) for op, s in fu.stats.items() if s.calls}


def mse(reference, test) -> np.ndarray:
    """Mean squared error per image (gray levels^2) of ``test`` against ``reference``, both (N, H, W) or (H, W)."""
    ref = np.asarray(reference, dtype=np.float64)
    tst = np.asarray(test, dtype=np.float64)
    if ref.shape != tst.shape:
        raise ParameterError(f"reference and test shapes differ: {ref.shape} vs {tst.shape}")
    if ref.ndim == 2:
        ref, tst = ref[None], tst[None]
    return ((ref - tst) ** 2).reshape(len(ref), -1).mean(1)


def psnr(reference, test, peak: float = 255.0, cap: float = 100.0) -> np.ndarray:
    """PSNR in dB per image, ``10 log10(peak^2 / MSE)``; identical images (MSE 0) get ``cap``."""
    with np.errstate(divide="ignore"):
        db = 10.0 * np.log10(peak**2 / mse(reference, test))
    return np.minimum(db, cap)


def pooled_psnr(reference, test, peak: float = 255.0, cap: float = 100.0) -> float:
    """PSNR in dB of the MSE averaged over all images (robust where many images have no error at all)."""
    m = float(mse(reference, test).mean())
    return cap if m == 0 else min(cap, 10.0 * np.log10(peak**2 / m))
