"""Standard electrode sets (10-20 / 10-10 names) and their positions on a unit sphere."""

from __future__ import annotations

import functools
import warnings
from collections.abc import Sequence

import numpy as np

#: A 32-channel 10-20 subset covering frontal, sensorimotor (C3/Cz/C4, FC3/FC4, CP3/CP4) and
#: occipital (O1/Oz/O2) sites: what a motor-imagery + SSVEP lab cap typically carries.
STANDARD_32: tuple[str, ...] = (
    "Fp1", "Fp2", "F7", "F3", "Fz", "F4", "F8",
    "FC5", "FC3", "FC1", "FC2", "FC4", "FC6",
    "T7", "C3", "Cz", "C4", "T8",
    "CP5", "CP3", "CP1", "CP2", "CP4", "CP6",
    "P7", "P3", "Pz", "P4", "P8",
    "O1", "Oz", "O2",
)

#: The 64-channel 10-10 layout of BioSemi/actiCAP 64 caps (10-10 names).
STANDARD_64: tuple[str, ...] = (
    "Fp1", "AF7", "AF3", "F1", "F3", "F5", "F7", "FT7", "FC5", "FC3", "FC1", "C1", "C3", "C5",
    "T7", "TP7", "CP5", "CP3", "CP1", "P1", "P3", "P5", "P7", "P9", "PO7", "PO3", "O1", "Iz",
    "Oz", "POz", "Pz", "CPz", "Fpz", "Fp2", "AF8", "AF4", "AFz", "Fz", "F2", "F4", "F6", "F8",
    "FT8", "FC6", "FC4", "FC2", "FCz", "Cz", "C2", "C4", "C6", "T8", "TP8", "CP6", "CP4", "CP2",
    "P2", "P4", "P6", "P8", "P10", "PO8", "PO4", "O2",
)

MONTAGES: dict[str, tuple[str, ...]] = {"standard_32": STANDARD_32, "standard_64": STANDARD_64}


def montage_channels(montage: str | Sequence[str]) -> tuple[str, ...]:
    """Channel names of a named montage (``"standard_32"``, ``"standard_64"``) or of a list.

    Raises
    ------
    ValueError
        If the name is unknown or a listed channel has no standard position.
    """
    if isinstance(montage, str):
        key = montage.strip().lower().replace("-", "_")
        key = {"32": "standard_32", "64": "standard_64"}.get(key, key)
        if key not in MONTAGES:
            raise ValueError(
                f"Unknown montage {montage!r}; use one of {sorted(MONTAGES)} or a list of "
                "10-20/10-10 channel names."
            )
        return MONTAGES[key]
    names = tuple(str(n) for n in montage)
    channel_positions(names)  # validates the names
    return names


@functools.lru_cache(maxsize=1)
def _all_positions() -> dict[str, np.ndarray]:
    import mne  # lazy: only the simulator needs positions

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pos = mne.channels.make_standard_montage("colin27_1005").get_positions()["ch_pos"]
    return {name.lower(): np.asarray(p, dtype=float) for name, p in pos.items()}


def channel_positions(ch_names: Sequence[str]) -> np.ndarray:
    """Unit vectors (n, 3) pointing from the head centre to each electrode (10-05 positions).

    Raises
    ------
    ValueError
        If a name is not a standard 10-05 electrode.
    """
    table = _all_positions()
    missing = [n for n in ch_names if n.lower() not in table]
    if missing:
        raise ValueError(
            f"No standard position for channel(s) {missing}; use 10-20/10-10 names such as "
            "'C3', 'Cz', 'FC4' or 'Oz'."
        )
    xyz = np.array([table[n.lower()] for n in ch_names])
    return xyz / np.linalg.norm(xyz, axis=1, keepdims=True)


def angular_distance(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Great-circle angle (radians) between unit vectors ``a`` (n, 3) and ``b`` (m, 3): (n, m)."""
    return np.arccos(np.clip(np.atleast_2d(a) @ np.atleast_2d(b).T, -1.0, 1.0))
