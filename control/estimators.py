"""Decoding estimators shared by training (``calibration``) and online decoding (``control``).

They live here, in ``control``, because a decoder bundle stores fitted instances of them: loading
a bundle (skops, with an explicit list of trusted types) must find the classes in the package
that decodes, without importing the training code. ``calibration.pipelines`` assembles them into
named pipelines.

- :class:`BandPass`: zero-phase band-pass of each window, inside the pipeline, so the online
  decoder feeds a pipeline exactly what training saw (a window of raw samples).
- :class:`OASCovariances`: covariance matrices with OAS shrinkage (well conditioned with many
  channels and short windows).
- :class:`CCAClassifier`, :class:`FilterBankCCA`: SSVEP decoding by canonical correlation
  analysis against sine/cosine references.
"""

from __future__ import annotations

import re

import mne
import numpy as np
from pyriemann.estimation import Covariances
from scipy.optimize import minimize_scalar
from scipy.signal import sosfilt, sosfilt_zi, sosfiltfilt
from sklearn.base import BaseEstimator, ClassifierMixin, TransformerMixin
from sklearn.pipeline import FeatureUnion


class BandPass(TransformerMixin, BaseEstimator):
    """Zero-phase Butterworth band-pass of each window (IIR designed by MNE, second-order sections).

    Parameters
    ----------
    sfreq : float
        Sampling rate of the windows (Hz).
    l_freq, h_freq : float or None
        Pass band edges (Hz); ``None`` for a low-pass or high-pass only.
    order : int
        Butterworth order (doubled by the forward-backward pass).
    """

    def __init__(self, sfreq: float = 250.0, l_freq: float | None = 8.0,
                 h_freq: float | None = 30.0, order: int = 4) -> None:
        self.sfreq = sfreq
        self.l_freq = l_freq
        self.h_freq = h_freq
        self.order = order

    def fit(self, X=None, y=None):
        params = mne.filter.create_filter(
            None, float(self.sfreq), self.l_freq, self.h_freq, method="iir",
            iir_params=dict(order=int(self.order), ftype="butter", output="sos"), verbose=False)
        self.sos_ = np.asarray(params["sos"], dtype=np.float64)
        # Initial conditions, computed once: scipy's sosfiltfilt re-derives them on every call,
        # which costs more than the filtering itself on a 1 s window.
        self.zi_ = sosfilt_zi(self.sos_)
        n_sections = self.sos_.shape[0]
        ntaps = 2 * n_sections + 1 - min(int((self.sos_[:, 2] == 0).sum()),
                                         int((self.sos_[:, 5] == 0).sum()))
        self.padlen_ = 3 * ntaps
        return self

    def transform(self, X):
        """Forward-backward filtering, as :func:`scipy.signal.sosfiltfilt` (odd padding)."""
        X = np.asarray(X, dtype=np.float64)
        edge = min(self.padlen_, X.shape[-1] - 1)
        if edge < 1:
            return sosfiltfilt(self.sos_, X, axis=-1)
        # Odd extension at both ends (point reflection about the end samples), as scipy does.
        ext = np.concatenate([2 * X[..., :1] - X[..., edge:0:-1], X,
                              2 * X[..., -1:] - X[..., -2:-edge - 2:-1]], axis=-1)
        zi = self.zi_.reshape((self.zi_.shape[0],) + (1,) * (X.ndim - 1) + (2,))
        y, _ = sosfilt(self.sos_, ext, axis=-1, zi=zi * ext[..., :1])
        y, _ = sosfilt(self.sos_, y[..., ::-1], axis=-1, zi=zi * y[..., -1:])
        return np.ascontiguousarray(y[..., ::-1][..., edge:-edge])


class OASCovariances(Covariances):
    """pyriemann's ``Covariances(estimator="oas")``, computed for all windows at once.

    Same numbers as scikit-learn's ``oas`` (Chen et al. 2010), which pyriemann calls window by
    window; the vectorised form removes that per-call overhead from every online decision.
    """

    def __init__(self, estimator: str = "oas") -> None:
        super().__init__(estimator=estimator)

    def transform(self, X):
        if self.estimator != "oas":
            return super().transform(X)
        X = np.asarray(X, dtype=np.float64)
        n_ch, n_times = X.shape[-2], X.shape[-1]
        Xc = X - X.mean(axis=-1, keepdims=True)
        emp = Xc @ np.swapaxes(Xc, -1, -2) / n_times
        alpha = np.mean(emp ** 2, axis=(-2, -1))
        mu = np.trace(emp, axis1=-2, axis2=-1) / n_ch
        num = alpha + mu ** 2
        den = (n_times + 1) * (alpha - mu ** 2 / n_ch)
        with np.errstate(divide="ignore", invalid="ignore"):
            shrink = np.where(den == 0, 1.0, np.minimum(num / np.where(den == 0, 1, den), 1.0))
        cov = (1.0 - shrink)[..., None, None] * emp
        idx = np.arange(n_ch)
        cov[..., idx, idx] += (shrink * mu)[..., None]
        return cov


# --------------------------------------------------------------------------------------------
# SSVEP: canonical correlation analysis against sine/cosine references.


def parse_frequency(label: str) -> float:
    """Stimulation frequency encoded in an SSVEP class label (``"ssvep:12.0"``, ``"12Hz"``).

    Raises
    ------
    ValueError
        If the label holds no number.
    """
    match = re.search(r"(\d+(?:\.\d+)?)", str(label))
    if not match:
        raise ValueError(
            f"SSVEP class {label!r} names no frequency; label targets like 'ssvep:12.0' or pass "
            "freqs={label: Hz}."
        )
    return float(match.group(1))


def _max_canon_corrs(Xc: np.ndarray, refs: list[np.ndarray]) -> np.ndarray:
    """Largest canonical correlation between centred windows Xc (n, n_ch, n_times) and each
    orthonormal reference basis in ``refs`` (n_times, 2h), shape (n, n_refs).

    With Cxx = Xc Xc' = L L', the canonical correlations with Q are the singular values of
    L^-1 Xc Q: one Cholesky per window and small matrices instead of a QR of every window.
    """
    cxx = Xc @ np.swapaxes(Xc, 1, 2)
    ridge = 1e-9 * np.trace(cxx, axis1=1, axis2=2)[:, None, None] + 1e-30
    L = np.linalg.cholesky(cxx + ridge * np.eye(cxx.shape[1]))
    M = np.linalg.solve(L, Xc @ np.concatenate(refs, axis=1))  # (n, n_ch, sum of 2h)
    out = np.empty((Xc.shape[0], len(refs)))
    start = 0
    for k, Q in enumerate(refs):
        stop = start + Q.shape[1]
        out[:, k] = np.linalg.svd(M[:, :, start:stop], compute_uv=False)[:, 0]
        start = stop
    return np.minimum(out, 1.0)


class CCAClassifier(ClassifierMixin, BaseEstimator):
    """SSVEP decoder by canonical correlation analysis (Lin et al. 2006).

    Each class is a stimulation frequency; a window is scored against sine/cosine references at
    the frequency and its harmonics, and the class with the largest canonical correlation wins.
    Nothing is learnt from the data but the class list and one softmax temperature that turns
    correlations into calibrated probabilities (fitted by maximum likelihood).

    Parameters
    ----------
    sfreq : float
        Sampling rate (Hz).
    freqs : dict or None
        Class label -> frequency (Hz); default: parsed from the labels.
    n_harmonics : int
        Number of harmonics in the references.
    l_freq, h_freq : float or None
        Band-pass applied to each window first (None: no filtering).
    """

    def __init__(self, sfreq: float = 250.0, freqs: dict | None = None, n_harmonics: int = 3,
                 l_freq: float | None = 6.0, h_freq: float | None = 40.0) -> None:
        self.sfreq = sfreq
        self.freqs = freqs
        self.n_harmonics = n_harmonics
        self.l_freq = l_freq
        self.h_freq = h_freq

    def _bands(self) -> list[tuple[float | None, float | None]]:
        return [(self.l_freq, self.h_freq)]

    def _band_weights(self) -> np.ndarray:
        return np.ones(1)

    def fit(self, X, y):
        y = np.asarray(y)
        self.classes_ = np.unique(y)
        freqs = self.freqs or {}
        self.target_freqs_ = np.array(
            [float(freqs[c]) if c in freqs else parse_frequency(c) for c in self.classes_])
        self.filters_ = [
            BandPass(self.sfreq, lo, hi).fit() if (lo or hi) else None for lo, hi in self._bands()
        ]
        self.temperature_ = 1.0
        self.n_times_ = int(np.shape(X)[-1])
        self.references_ = self._references(self.n_times_)  # reused by every decision
        scores = self.decision_function(X)
        idx = np.searchsorted(self.classes_, y)
        # One temperature for calibrated probabilities: maximise the log-likelihood of y.

        def nll(log_t: float) -> float:
            z = scores * np.exp(log_t)
            z = z - z.max(axis=1, keepdims=True)
            logp = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
            return -float(logp[np.arange(len(idx)), idx].mean())

        res = minimize_scalar(nll, bounds=(-3.0, 8.0), method="bounded")
        self.temperature_ = float(np.exp(res.x))
        return self

    def _references(self, n_times: int) -> list[np.ndarray]:
        t = np.arange(n_times) / float(self.sfreq)
        refs = []
        for f in self.target_freqs_:
            cols = []
            for h in range(1, int(self.n_harmonics) + 1):
                if h * f < self.sfreq / 2:
                    cols += [np.sin(2 * np.pi * h * f * t), np.cos(2 * np.pi * h * f * t)]
            Y = np.stack(cols, axis=1)
            Q, _ = np.linalg.qr(Y - Y.mean(axis=0))
            refs.append(Q)
        return refs

    def decision_function(self, X) -> np.ndarray:
        """Weighted sum of squared canonical correlations, shape (n_windows, n_classes)."""
        X = np.asarray(X, dtype=np.float64)
        refs = (self.references_ if X.shape[-1] == self.n_times_
                else self._references(X.shape[-1]))
        weights = self._band_weights()
        out = np.zeros((X.shape[0], len(refs)))
        for filt, w in zip(self.filters_, weights, strict=True):
            Xf = filt.transform(X) if filt is not None else X
            Xc = Xf - Xf.mean(axis=2, keepdims=True)
            out += w * _max_canon_corrs(Xc, refs) ** 2
        return out * self.temperature_

    def predict_proba(self, X) -> np.ndarray:
        z = self.decision_function(X)
        z = z - z.max(axis=1, keepdims=True)
        p = np.exp(z)
        return p / p.sum(axis=1, keepdims=True)

    def predict(self, X) -> np.ndarray:
        return self.classes_[np.argmax(self.decision_function(X), axis=1)]


class FilterBankCCA(CCAClassifier):
    """Filter-bank CCA (Chen et al. 2015): CCA in sub-bands starting at multiples of the lowest
    target frequency, combined with weights n^-1.25 + 0.25.

    Parameters
    ----------
    n_bands : int
        Number of sub-bands.
    Other parameters as :class:`CCAClassifier`.
    """

    def __init__(self, sfreq: float = 250.0, freqs: dict | None = None, n_harmonics: int = 3,
                 l_freq: float | None = 6.0, h_freq: float | None = 40.0,
                 n_bands: int = 3) -> None:
        super().__init__(sfreq, freqs, n_harmonics, l_freq, h_freq)
        self.n_bands = n_bands

    def _bands(self) -> list[tuple[float | None, float | None]]:
        f0 = float(np.min(self.target_freqs_)) - 2.0
        hi = float(self.h_freq or self.sfreq * 0.45)
        lows = [max(f0 * (m + 1), float(self.l_freq or 1.0)) for m in range(int(self.n_bands))]
        return [(lo, hi) for lo in lows if lo < hi - 2.0] or [(self.l_freq, self.h_freq)]

    def _band_weights(self) -> np.ndarray:
        n = np.arange(1, len(self.filters_) + 1, dtype=float)
        return n ** -1.25 + 0.25


class SequentialUnion(FeatureUnion):
    """:class:`sklearn.pipeline.FeatureUnion` whose ``transform`` loops over its branches.

    FeatureUnion dispatches every transform through joblib, which costs about 0.8 ms per online
    decision for a five-band filter bank (13 % of FBCSP's decision time); fitting is unchanged.
    Weights and ``"drop"`` branches behave as in FeatureUnion.
    """

    def transform(self, X):
        weights = self.transformer_weights or {}
        parts = []
        for name, trans in self.transformer_list:
            if trans == "drop" or trans is None:
                continue
            Xt = X if trans == "passthrough" else trans.transform(X)
            parts.append(Xt * weights.get(name, 1.0) if name in weights else Xt)
        if not parts:
            return np.zeros((len(X), 0))
        return np.hstack(parts)
