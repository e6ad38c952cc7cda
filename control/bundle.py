"""The decoder bundle: a fitted pipeline plus everything needed to use it on a live stream.

A bundle is a folder (or the same two files in a zip):

- ``pipeline.skops``: the fitted scikit-learn estimator, written by skops. Loading checks every
  type in it against :data:`TRUSTED_TYPES` first and refuses anything else, so opening a bundle
  never runs code from it (no pickle anywhere).
- ``meta.json``: channel names, sampling rate, units, band, window, step, classes, the default
  class -> action mapping, training figures, software versions, and the SHA-256 of
  ``pipeline.skops`` (a modified pipeline file is refused).

The online decoder uses :meth:`DecoderBundle.check_stream` to match a stream to the bundle and
:meth:`DecoderBundle.prepare` to turn the newest samples into the window the pipeline expects.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import logging
import platform
import zipfile
from dataclasses import dataclass, field
from fractions import Fraction
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from control.actions import Action, parse_action

logger = logging.getLogger(__name__)

FORMAT = "yume-decoder-bundle"
FORMAT_VERSION = 1
PIPELINE_FILE = "pipeline.skops"
META_FILE = "meta.json"

# Types a bundle's pipeline may contain beyond those skops trusts by default (scikit-learn,
# numpy, scipy basics). Anything else is refused: a bundle is data, not code.
TRUSTED_TYPES: tuple[str, ...] = (
    "control.estimators.BandPass",
    "control.estimators.BlockRecenter",
    "control.estimators.BlockTangentSpace",
    "control.estimators.CCAClassifier",
    "control.estimators.FilterBankCCA",
    "control.estimators.FilterBankCovariances",
    "control.estimators.OASCovariances",
    "control.estimators.RestGatedClassifier",
    "control.estimators.SequentialUnion",
    "control.recentering.Recenter",
    "pyriemann.channelselection.ElectrodeSelection",
    "pyriemann.classification.MDM",
    "pyriemann.classification.FgMDM",
    "pyriemann.estimation.Covariances",
    "pyriemann.spatialfilters.CSP",
    "pyriemann.tangentspace.TangentSpace",
    "pyriemann.tangentspace.FGDA",
    "sklearn.model_selection._split.KFold",  # LogisticRegressionCV's folds (*_lrcv)
)

# Default action of each class (strings for control.actions.parse_action).
DEFAULT_ACTIONS: dict[str, str] = {
    "left_hand": "←", "right_hand": "→", "feet": "W", "rest": "·", "hands": "S",
    "both_hands": "S", "tongue": "S",
}
# SSVEP targets (and unknown classes) get these in order, after the ones above.
_FALLBACK_ACTIONS = ("W", "←", "→", "S", "A", "D", "↑", "↓", "·")
# Resampling a stream to the bundle's rate is allowed when the band's upper edge stays below
# this fraction of both rates: the anti-alias filter of the resampler then leaves the band alone.
_SAFE_BAND_FRACTION = 0.4


class BundleError(ValueError):
    """A bundle that cannot be saved, loaded or used with a stream; the message says why."""


def default_actions(classes) -> dict[str, str]:
    """Default class -> action string mapping (left_hand -> "←", right_hand -> "→", feet -> "W",
    rest -> "·"; other classes take the remaining keys in a fixed order)."""
    out: dict[str, str] = {}
    free = [a for a in _FALLBACK_ACTIONS]
    for c in classes:
        if str(c) in DEFAULT_ACTIONS:
            out[str(c)] = DEFAULT_ACTIONS[str(c)]
    for a in out.values():
        if a in free:
            free.remove(a)
    for c in classes:
        if str(c) not in out:
            out[str(c)] = free.pop(0) if free else "·"
    return out


def software_versions() -> dict[str, str]:
    """Versions of the packages a bundle depends on (recorded in ``meta.json``)."""
    out = {"python": platform.python_version()}
    for pkg in ("yume-bci", "numpy", "scipy", "scikit-learn", "pyriemann", "mne", "skops"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            pass
    return out


@dataclass
class DecoderBundle:
    """A fitted decoder and the metadata to apply it to a live stream.

    Parameters
    ----------
    pipeline : estimator
        Fitted scikit-learn estimator; ``predict_proba(X)`` with X of shape
        (n_windows, n_channels, n_times) in ``units``, channels in ``ch_names`` order, sampled
        at ``sfreq``, ``n_times = round(window_s * sfreq)``.
    ch_names : tuple of str
        Channels the pipeline expects, in order.
    sfreq : float
        Sampling rate the pipeline expects (Hz).
    classes : tuple of str
        Class labels, in the column order of ``predict_proba``.
    units : str
        Unit of the samples (``"uV"`` or ``"V"``).
    band : (float, float)
        Pass band the pipeline filters to (Hz), informative and used to decide when resampling
        is safe.
    window_s : float
        Length of one decision window (s).
    step_s : float
        Suggested time between decisions online (s).
    actions : dict
        Class -> action string (see :func:`control.actions.parse_action`).
    paradigm : str
        ``"mi"`` or ``"ssvep"``.
    name : str
        Pipeline name (``"ts_lr"``...).
    figures : dict
        Training figures (cross-validated scores, ITR...), JSON-serialisable.
    versions : dict
        Software versions at training time.
    created : str
        ISO time of creation.
    """

    pipeline: Any
    ch_names: tuple[str, ...]
    sfreq: float
    classes: tuple[str, ...]
    units: str = "uV"
    band: tuple[float, float] = (8.0, 30.0)
    window_s: float = 2.0
    step_s: float = 0.5
    actions: dict[str, str] = field(default_factory=dict)
    paradigm: str = "mi"
    name: str = ""
    figures: dict = field(default_factory=dict)
    versions: dict = field(default_factory=software_versions)
    created: str = field(
        default_factory=lambda: _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"))

    def __post_init__(self) -> None:
        self.ch_names = tuple(str(c) for c in self.ch_names)
        self.classes = tuple(str(c) for c in self.classes)
        self.band = (float(self.band[0]), float(self.band[1]))
        self.sfreq = float(self.sfreq)
        if not self.actions:
            self.actions = default_actions(self.classes)
        missing = [c for c in self.classes if c not in self.actions]
        if missing:
            raise BundleError(
                f"No action for class(es) {', '.join(missing)}; give every class an action.")
        for a in self.actions.values():
            parse_action(a)  # raises ActionError with the offending string
        fitted = getattr(self.pipeline, "classes_", None)
        if fitted is not None and [str(c) for c in fitted] != list(self.classes):
            raise BundleError(
                f"The pipeline's classes {list(fitted)} differ from the bundle's "
                f"{list(self.classes)}; build the bundle with classes=pipeline.classes_.")

    # ---------------------------------------------------------------- using it on a stream
    @property
    def n_times(self) -> int:
        """Samples per window at the bundle's rate."""
        return int(round(self.window_s * self.sfreq))

    def action(self, cls: str) -> Action:
        """The action mapped to a class."""
        return parse_action(self.actions[cls])

    def check_stream(self, info, allow_resample: bool = True) -> np.ndarray:
        """Check that a stream can feed this decoder; return the channel index map.

        Channel names are matched case-insensitively, ignoring dots and spaces (``"C3.."``
        matches ``"C3"``). A stream at another sampling rate is accepted only when resampling
        is safe: ``allow_resample`` is true and the band's upper edge is below 0.4 x both rates
        (then the resampler's anti-alias filter does not touch the band, and upsampling adds
        nothing the pipeline looks at). :meth:`prepare` then resamples.

        Parameters
        ----------
        info : bci.stream.StreamInfo
            The stream's metadata (``ch_names``, ``sfreq``, ``units``).
        allow_resample : bool
            Accept another sampling rate where safe.

        Returns
        -------
        index : ndarray of int, shape (n_channels,)
            For each bundle channel, its row in the stream: ``data[index]`` reorders a stream
            chunk into the bundle's channel order.

        Raises
        ------
        BundleError
            Missing channels, an unsafe or disallowed rate change, or unknown units.
        """
        lookup: dict[str, int] = {}
        for i, name in enumerate(info.ch_names):
            lookup.setdefault(_norm(name), i)
        missing = [c for c in self.ch_names if _norm(c) not in lookup]
        if missing:
            shown = ", ".join(missing[:8]) + (" ..." if len(missing) > 8 else "")
            raise BundleError(
                f"The stream '{info.name}' lacks {len(missing)} of the decoder's "
                f"{len(self.ch_names)} channels ({shown}); use a stream with the montage the "
                "decoder was trained on or train a decoder on this montage.")
        if abs(float(info.sfreq) - self.sfreq) > 1e-6 * self.sfreq:
            if not allow_resample:
                raise BundleError(
                    f"The stream '{info.name}' runs at {info.sfreq:g} Hz but the decoder expects "
                    f"{self.sfreq:g} Hz; set the amplifier to {self.sfreq:g} Hz or allow "
                    "resampling.")
            limit = _SAFE_BAND_FRACTION * min(float(info.sfreq), self.sfreq)
            if float(info.sfreq) <= 0 or self.band[1] >= limit:
                raise BundleError(
                    f"The stream '{info.name}' runs at {info.sfreq:g} Hz; resampling it to the "
                    f"decoder's {self.sfreq:g} Hz is unsafe for its {self.band[1]:g} Hz band "
                    f"edge (needs < {limit:g} Hz); record at {self.sfreq:g} Hz or retrain.")
        _unit_scale(info.units, self.units)  # raises on unknown units
        return np.array([lookup[_norm(c)] for c in self.ch_names], dtype=int)

    def input_samples(self, info) -> int:
        """Stream samples needed for one window (at the stream's own rate)."""
        return int(round(self.window_s * float(info.sfreq)))

    def prepare(self, data: np.ndarray, info, index: np.ndarray | None = None) -> np.ndarray:
        """Turn the newest stream samples into one pipeline input of shape (1, n_ch, n_times).

        Parameters
        ----------
        data : ndarray, shape (n_stream_channels, n)
            Stream samples, newest last; at least :meth:`input_samples` of them.
        info : StreamInfo
            The stream's metadata.
        index : ndarray or None
            Result of :meth:`check_stream` (computed when None).
        """
        if index is None:
            index = self.check_stream(info)
        need = self.input_samples(info)
        if data.shape[1] < need:
            raise BundleError(
                f"A window needs {need} samples but only {data.shape[1]} arrived; wait "
                f"{self.window_s:g} s after the stream starts.")
        x = np.asarray(data[index, -need:], dtype=np.float64) * _unit_scale(info.units, self.units)
        if abs(float(info.sfreq) - self.sfreq) > 1e-6 * self.sfreq:
            from scipy.signal import resample_poly

            ratio = Fraction(self.sfreq / float(info.sfreq)).limit_denominator(1000)
            x = resample_poly(x, ratio.numerator, ratio.denominator, axis=1)
            x = _fit_length(x, self.n_times)
        return x[None]

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """Class probabilities (n_windows, n_classes), columns in :attr:`classes` order."""
        return self.pipeline.predict_proba(X)

    # ---------------------------------------------------------------- metadata
    def meta(self) -> dict:
        """The JSON-serialisable metadata (everything but the pipeline)."""
        return {
            "format": FORMAT, "format_version": FORMAT_VERSION, "name": self.name,
            "paradigm": self.paradigm, "ch_names": list(self.ch_names), "sfreq": self.sfreq,
            "units": self.units, "band": list(self.band), "window_s": self.window_s,
            "step_s": self.step_s, "classes": list(self.classes), "actions": dict(self.actions),
            "figures": self.figures, "versions": self.versions, "created": self.created,
        }


def _norm(name: str) -> str:
    return str(name).replace(".", "").replace(" ", "").upper()


_UNITS = {"V": 1.0, "MV": 1e-3, "UV": 1e-6, "µV".upper(): 1e-6, "MICROVOLTS": 1e-6,
          "NV": 1e-9, "VOLTS": 1.0}


def _unit_scale(src: str, dst: str) -> float:
    """Factor that converts samples in ``src`` units to ``dst`` units."""
    try:
        return _UNITS[str(src).strip().upper()] / _UNITS[str(dst).strip().upper()]
    except KeyError as err:
        raise BundleError(
            f"Unknown unit {err.args[0]!r} (stream {src!r}, decoder {dst!r}); use 'uV' or 'V'."
        ) from None


def _fit_length(x: np.ndarray, n: int) -> np.ndarray:
    if x.shape[1] >= n:
        return x[:, -n:]
    return np.pad(x, ((0, 0), (n - x.shape[1], 0)), mode="edge")


def _json_default(obj):
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    raise TypeError(f"{type(obj).__name__} is not JSON serialisable")


def save_bundle(bundle: DecoderBundle, path: str | Path) -> Path:
    """Write a bundle to a folder, or to a zip when ``path`` ends in ``.zip``.

    Returns
    -------
    Path
        Where it was written.
    """
    import skops.io as sio

    path = Path(path)
    blob = sio.dumps(bundle.pipeline)
    untrusted = _untrusted(blob, ())
    if untrusted:
        raise BundleError(
            f"The pipeline contains types a bundle may not hold ({', '.join(untrusted)}); "
            "build it from the project's pipelines or add the type to TRUSTED_TYPES.")
    meta = bundle.meta()
    meta["pipeline_sha256"] = hashlib.sha256(blob).hexdigest()
    text = json.dumps(meta, indent=2, ensure_ascii=False, default=_json_default)
    if path.suffix.lower() == ".zip":
        path.parent.mkdir(parents=True, exist_ok=True)
        with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
            zf.writestr(META_FILE, text)
            zf.writestr(PIPELINE_FILE, blob)
    else:
        path.mkdir(parents=True, exist_ok=True)
        (path / PIPELINE_FILE).write_bytes(blob)
        (path / META_FILE).write_text(text, encoding="utf-8")
    logger.info("saved decoder bundle %s (%s, %d classes)", path, bundle.name,
                len(bundle.classes))
    return path


def _untrusted(blob: bytes, extra: tuple[str, ...]) -> list[str]:
    import skops.io as sio

    allowed = set(TRUSTED_TYPES) | set(extra)
    return [t for t in sio.get_untrusted_types(data=blob) if t not in allowed]


def _read_files(path: Path) -> tuple[bytes, bytes]:
    if path.is_dir():
        files = (path / META_FILE, path / PIPELINE_FILE)
        if not all(f.is_file() for f in files):
            raise BundleError(
                f"{path} is not a decoder bundle (it needs {META_FILE} and {PIPELINE_FILE}); "
                "train one with `yume train`.")
        return files[0].read_bytes(), files[1].read_bytes()
    if not path.exists():
        raise BundleError(f"No decoder bundle at {path}; check the path or run `yume train`.")
    try:
        with zipfile.ZipFile(path) as zf:
            return zf.read(META_FILE), zf.read(PIPELINE_FILE)
    except (zipfile.BadZipFile, KeyError) as err:
        raise BundleError(
            f"{path} is not a readable decoder bundle ({err}); use a folder or zip written by "
            "`yume train`.") from None


def load_bundle(path: str | Path, extra_trusted: tuple[str, ...] = ()) -> DecoderBundle:
    """Read a bundle written by :func:`save_bundle` without running any code from it.

    Parameters
    ----------
    path : str or Path
        Bundle folder or zip.
    extra_trusted : tuple of str
        Fully qualified type names to trust besides :data:`TRUSTED_TYPES` (for your own
        estimators; review them first).

    Raises
    ------
    BundleError
        Missing or unreadable files, a pipeline file that does not match the checksum in
        ``meta.json`` (modified after saving), or types outside the trusted list.
    """
    import skops.io as sio

    path = Path(path)
    meta_bytes, blob = _read_files(path)
    try:
        meta = json.loads(meta_bytes.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise BundleError(f"{path}: {META_FILE} is not valid JSON ({err}); re-train the decoder."
                          ) from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise BundleError(f"{path} is not a Yume decoder bundle; train one with `yume train`.")
    if int(meta.get("format_version", 0)) > FORMAT_VERSION:
        raise BundleError(
            f"{path} was written by a newer version (format {meta['format_version']}); update "
            "yume-bci to load it.")
    if hashlib.sha256(blob).hexdigest() != meta.get("pipeline_sha256"):
        raise BundleError(
            f"{path}: {PIPELINE_FILE} does not match the checksum in {META_FILE}, so it was "
            "modified after training; do not use it, re-train or restore the original.")
    try:
        untrusted = _untrusted(blob, tuple(extra_trusted))
    except Exception as err:  # skops raises assorted errors on malformed files
        raise BundleError(f"{path}: {PIPELINE_FILE} is damaged ({err}); re-train the decoder."
                          ) from None
    if untrusted:
        raise BundleError(
            f"{path} contains types that are not on the trusted list ({', '.join(untrusted)}); "
            "it was not loaded. Only load bundles from people you trust, after reviewing those "
            "types.")
    trusted = [t for t in sio.get_untrusted_types(data=blob)]
    try:
        pipeline = sio.loads(blob, trusted=trusted)
    except Exception as err:
        raise BundleError(f"{path}: could not rebuild the pipeline ({err}); re-train it with "
                          "this version.") from None
    try:
        return DecoderBundle(
            pipeline=pipeline, ch_names=tuple(meta["ch_names"]), sfreq=float(meta["sfreq"]),
            classes=tuple(meta["classes"]), units=meta.get("units", "uV"),
            band=tuple(meta.get("band", (8.0, 30.0))), window_s=float(meta["window_s"]),
            step_s=float(meta.get("step_s", 0.5)), actions=dict(meta.get("actions", {})),
            paradigm=meta.get("paradigm", "mi"), name=meta.get("name", ""),
            figures=meta.get("figures", {}), versions=meta.get("versions", {}),
            created=meta.get("created", ""))
    except KeyError as err:
        raise BundleError(f"{path}: {META_FILE} lacks {err}; re-train the decoder.") from None
