"""What a run used besides its parameters: the network weights loaded in this process.

Float training is not bit-reproducible across CPU micro-architectures (oneDNN picks other kernels,
rounding differs, training trajectories part), so a zoo model trained on first use on another
machine can differ from ours in its weights while matching its accuracy. Every loaded network is
recorded here with a digest of its weights; :mod:`axlib.runs` writes the record into each run's
``meta.json`` (key ``models``), so a recomputed run can be traced to the exact weights.
"""

from __future__ import annotations

import hashlib

_MODELS: dict[str, dict] = {}


def weights_digest(state_dict: dict) -> str:
    """sha256 (first 16 hex digits) of a state dict's names, dtypes, shapes and values."""
    h = hashlib.sha256()
    for name in sorted(state_dict):
        t = state_dict[name].detach().cpu().contiguous()
        h.update(f"{name}:{t.dtype}:{tuple(t.shape)};".encode())
        h.update(t.numpy().tobytes())
    return h.hexdigest()[:16]


def record_model(name: str, net, **info) -> None:
    """Note that network ``name`` (a torch module, as loaded) is in use, with ``info`` (origin, accuracy)."""
    _MODELS[name] = {"weights_sha256_16": weights_digest(net.state_dict()),
                     **{k: v for k, v in info.items() if v is not None}}


def models_used() -> dict[str, dict]:
    """Every network recorded in this process so far (a copy)."""
    return {k: dict(v) for k, v in _MODELS.items()}
