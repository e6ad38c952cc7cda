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
  analysis against sine/cosine references, optionally with a learned no-control state
  (``rest_label``: windows of rest teach a gate on the best correlation and its margin, and
  ``rest`` becomes a class that the control policy never fires on).
- :class:`RestGatedClassifier`: a no-control detector (rest against any movement) times a
  classifier of the movement classes, for asynchronous motor imagery.
- :class:`FilterBankCovariances`, :class:`BlockRecenter`, :class:`BlockTangentSpace`: a
  filter-bank tangent space whose sub-band covariances are re-centred online together.
"""

from __future__ import annotations

import re

import mne
import numpy as np
from pyriemann.estimation import Covariances
from pyriemann.geometry.base import invsqrtm
from pyriemann.geometry.geodesic import geodesic
from pyriemann.geometry.mean import gmean
from pyriemann.tangentspace import TangentSpace
from scipy.optimize import minimize_scalar
from scipy.signal import sosfilt, sosfilt_zi, sosfiltfilt
from scipy.special import ndtr
from sklearn.base import BaseEstimator, ClassifierMixin, TransformerMixin, clone
from sklearn.pipeline import FeatureUnion

from control.recentering import Recenter, _check_covs


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

    With ``rest_label`` set and windows of that label in ``y`` (the person rests or looks away),
    the decoder also learns a no-control state from two features of each window, the best score
    and its margin over the second (high when one target is attended, low for rest):

    - a logistic regression of attended against rest windows gives the direction ``w`` in which
      the two features separate best;
    - the evidence ``u = w . f`` is referenced to the rest windows alone:
      ``p(control) = Phi((u - mean_rest) / sd_rest)``, the normal probability that a rest
      window scores lower. Rest correlations are chance correlations, which depend on the
      channels and the window length but not on how strong the person's SSVEP is that day, so
      this stays calibrated when the response is weaker in the next session (a boundary placed
      between the classes, as the regression's own probability puts it, moved with the SSVEP
      amplitude: on the simulated participant it missed every gaze of a session whose
      response was half as strong, measured).

    The targets share p(control) by their softmax and ``rest`` gets ``1 - p(control)``. Without
    a gate every window is some target, and a confident softmax picks one even while the
    person rests.

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
    rest_label : str or None
        Label of no-control windows in ``y``; None: no no-control state (every label is a
        target).
    gate_C : float
        Inverse regularisation of the gate's logistic regression (on standardised features).

    Attributes
    ----------
    targets_ : ndarray of str
        The target classes (``classes_`` less ``rest_label``).
    gate_ : LogisticRegression or None
        The gate's direction (None without a no-control state).
    rest_mean_, rest_sd_ : float
        Mean and SD of the gate's evidence over the rest windows.
    """

    def __init__(self, sfreq: float = 250.0, freqs: dict | None = None, n_harmonics: int = 3,
                 l_freq: float | None = 6.0, h_freq: float | None = 40.0,
                 rest_label: str | None = None, gate_C: float = 1.0) -> None:
        self.sfreq = sfreq
        self.freqs = freqs
        self.n_harmonics = n_harmonics
        self.l_freq = l_freq
        self.h_freq = h_freq
        self.rest_label = rest_label
        self.gate_C = gate_C

    def _bands(self) -> list[tuple[float | None, float | None]]:
        return [(self.l_freq, self.h_freq)]

    def _band_weights(self) -> np.ndarray:
        return np.ones(1)

    def fit(self, X, y):
        y = np.asarray(y)
        rest = np.zeros(len(y), dtype=bool) if self.rest_label is None else y == self.rest_label
        if self.rest_label is not None and not rest.any():
            raise ValueError(
                f"No window labelled {self.rest_label!r} to learn the no-control state from; "
                "train on recordings with rest periods, or set rest_label=None.")
        self.classes_ = np.unique(y)
        self.targets_ = np.unique(y[~rest])
        if len(self.targets_) < 2:
            raise ValueError(f"An SSVEP decoder needs at least two targets, got "
                             f"{list(self.targets_)}.")
        freqs = self.freqs or {}
        self.target_freqs_ = np.array(
            [float(freqs[c]) if c in freqs else parse_frequency(c) for c in self.targets_])
        self.filters_ = [
            BandPass(self.sfreq, lo, hi).fit() if (lo or hi) else None for lo, hi in self._bands()
        ]
        self.temperature_ = 1.0
        self.n_times_ = int(np.shape(X)[-1])
        self.references_ = self._references(self.n_times_)  # reused by every decision
        raw = self.correlations(X)
        scores = raw[~rest]
        idx = np.searchsorted(self.targets_, y[~rest])
        # One temperature for calibrated probabilities: maximise the log-likelihood of y.

        def nll(log_t: float) -> float:
            z = scores * np.exp(log_t)
            z = z - z.max(axis=1, keepdims=True)
            logp = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
            return -float(logp[np.arange(len(idx)), idx].mean())

        res = minimize_scalar(nll, bounds=(-3.0, 8.0), method="bounded")
        self.temperature_ = float(np.exp(res.x))
        self.gate_ = None
        if rest.any():
            from sklearn.linear_model import LogisticRegression

            feats = self._gate_features(raw)
            self.gate_mean_ = feats.mean(axis=0)
            self.gate_scale_ = feats.std(axis=0) + 1e-12
            # Balanced: rest periods are usually longer than cues, and a gate that learnt
            # their prior would miss short gazes; the operating point sets the trade-off.
            self.gate_ = LogisticRegression(C=float(self.gate_C), class_weight="balanced").fit(
                (feats - self.gate_mean_) / self.gate_scale_, (~rest).astype(int))
            u = self._evidence(raw)[rest]
            self.rest_mean_, self.rest_sd_ = float(u.mean()), float(u.std() + 1e-12)
        return self

    def _evidence(self, raw: np.ndarray) -> np.ndarray:
        """The gate's linear evidence for control, per window."""
        z = (self._gate_features(raw) - self.gate_mean_) / self.gate_scale_
        return z @ self.gate_.coef_[0]

    @staticmethod
    def _gate_features(raw: np.ndarray) -> np.ndarray:
        """Best score and its margin over the second, per window (n, 2)."""
        top = np.sort(raw, axis=1)[:, -2:]
        return np.stack([top[:, 1], top[:, 1] - top[:, 0]], axis=1)

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

    def correlations(self, X) -> np.ndarray:
        """Weighted sum of squared canonical correlations with each target,
        shape (n_windows, n_targets), targets in :attr:`targets_` order."""
        X = np.asarray(X, dtype=np.float64)
        refs = (self.references_ if X.shape[-1] == self.n_times_
                else self._references(X.shape[-1]))
        weights = self._band_weights()
        out = np.zeros((X.shape[0], len(refs)))
        for filt, w in zip(self.filters_, weights, strict=True):
            Xf = filt.transform(X) if filt is not None else X
            Xc = Xf - Xf.mean(axis=2, keepdims=True)
            out += w * _max_canon_corrs(Xc, refs) ** 2
        return out

    def control_probability(self, X) -> np.ndarray:
        """p(control), the gate's probability that a target is attended (ones without a gate)."""
        return self._control(self.correlations(X))

    def _control(self, raw: np.ndarray) -> np.ndarray:
        if getattr(self, "gate_", None) is None:
            return np.ones(len(raw))
        return ndtr((self._evidence(raw) - self.rest_mean_) / self.rest_sd_)

    def _proba(self, raw: np.ndarray) -> np.ndarray:
        z = raw * self.temperature_
        z = z - z.max(axis=1, keepdims=True)
        p = np.exp(z)
        p /= p.sum(axis=1, keepdims=True)
        if getattr(self, "gate_", None) is None:
            return p
        control = self._control(raw)
        out = np.empty((len(raw), len(self.classes_)))
        out[:, np.searchsorted(self.classes_, self.targets_)] = p * control[:, None]
        out[:, int(np.searchsorted(self.classes_, self.rest_label))] = 1.0 - control
        return out

    def decision_function(self, X) -> np.ndarray:
        """Scores per class, shape (n_windows, n_classes): the squared canonical correlations
        times the temperature; with a no-control state, the log-probabilities."""
        raw = self.correlations(X)
        if getattr(self, "gate_", None) is None:
            return raw * self.temperature_
        return np.log(np.maximum(self._proba(raw), 1e-300))

    def predict_proba(self, X) -> np.ndarray:
        return self._proba(self.correlations(X))

    def predict(self, X) -> np.ndarray:
        return self.classes_[np.argmax(self.predict_proba(X), axis=1)]


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
                 n_bands: int = 3, rest_label: str | None = None, gate_C: float = 1.0) -> None:
        super().__init__(sfreq, freqs, n_harmonics, l_freq, h_freq, rest_label, gate_C)
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


class RestGatedClassifier(ClassifierMixin, BaseEstimator):
    """A no-control detector times a movement classifier: ``P(rest)``, ``P(move) P(c | move)``.

    One multinomial model with rest as a third class must place rest, which is the absence of a
    pattern, between the movement classes; on real EEG (PhysioNet S001) that gives far fewer
    confident movement windows than two binary questions asked apart: "is this rest?" (every
    window) and "which movement?" (movement windows only). The product is a proper
    distribution over ``rest`` and the classes, so :class:`control.policy.ControlPolicy`
    thresholds it as it does any decoder's output.

    Parameters
    ----------
    detector : classifier
        Unfitted; learns rest (0) against movement (1) on every window, with balanced weights
        when it takes ``class_weight``.
    classifier : classifier
        Unfitted; learns the movement classes on the movement windows.
    rest_label : str
        The no-control label in ``y``.

    Attributes
    ----------
    detector_, classifier_ : fitted clones
    classes_ : ndarray of str
        ``rest_label`` first, then the classifier's classes.
    """

    def __init__(self, detector=None, classifier=None, rest_label: str = "rest") -> None:
        self.detector = detector
        self.classifier = classifier
        self.rest_label = rest_label

    def fit(self, X, y):
        y = np.asarray(y).astype(str)
        moving = y != self.rest_label
        if moving.all() or not moving.any():
            raise ValueError(f"RestGatedClassifier needs windows of {self.rest_label!r} and of "
                             "at least one movement class.")
        detector = clone(self.detector)
        if "class_weight" in detector.get_params():
            # Rest and movement windows come in unequal numbers; the gate should not lean.
            detector.set_params(class_weight="balanced")
        self.detector_ = detector.fit(X, moving.astype(int))
        self.classifier_ = clone(self.classifier).fit(X[moving], y[moving])
        self.classes_ = np.array([self.rest_label, *map(str, self.classifier_.classes_)])
        return self

    def predict_proba(self, X) -> np.ndarray:
        move = self.detector_.predict_proba(X)[:, list(self.detector_.classes_).index(1)]
        return np.column_stack([1.0 - move, move[:, None] * self.classifier_.predict_proba(X)])

    def predict(self, X) -> np.ndarray:
        return self.classes_[np.argmax(self.predict_proba(X), axis=1)]


# --------------------------------------------------------------------------------------------
# Filter-bank Riemannian decoding that can be re-centred online: one block-diagonal matrix
# holds every sub-band's covariance, so the live decoder's single re-centring step
# (control.recentering.find_recenter) adapts all bands at once.


class FilterBankCovariances(TransformerMixin, BaseEstimator):
    """OAS covariance of each sub-band of a window, as the blocks of one block-diagonal matrix.

    Parameters
    ----------
    sfreq : float
        Sampling rate of the windows (Hz).
    bands : sequence of (float, float)
        Sub-bands (Hz), each band-passed by :class:`BandPass`.
    order : int
        Butterworth order of each band-pass.
    """

    def __init__(self, sfreq: float = 250.0,
                 bands=((8.0, 12.0), (12.0, 16.0), (16.0, 20.0), (20.0, 30.0)),
                 order: int = 4) -> None:
        self.sfreq = sfreq
        self.bands = bands
        self.order = order

    def fit(self, X=None, y=None):
        if len(self.bands) < 1:
            raise ValueError("FilterBankCovariances needs at least one band; pass "
                             "bands=[(lo, hi)].")
        self.filters_ = [BandPass(self.sfreq, lo, hi, self.order).fit() for lo, hi in self.bands]
        self.n_blocks_ = len(self.filters_)
        return self

    def transform(self, X) -> np.ndarray:
        """Block-diagonal covariances, shape (n, n_bands * n_channels, n_bands * n_channels)."""
        X = np.asarray(X, dtype=np.float64)
        n, c = X.shape[0], X.shape[1]
        out = np.zeros((n, self.n_blocks_ * c, self.n_blocks_ * c))
        oas = OASCovariances()
        for b, bp in enumerate(self.filters_):
            out[:, b * c:(b + 1) * c, b * c:(b + 1) * c] = oas.transform(bp.transform(X))
        return out


def _blocks(X: np.ndarray, n_blocks: int) -> list[np.ndarray]:
    """The diagonal blocks of block-diagonal matrices (..., n_blocks * c, n_blocks * c)."""
    if X.shape[-1] % n_blocks:
        raise ValueError(f"Matrices of size {X.shape[-1]} do not split into {n_blocks} equal "
                         "blocks; use the n_blocks of the covariance step.")
    c = X.shape[-1] // n_blocks
    return [X[..., b * c:(b + 1) * c, b * c:(b + 1) * c] for b in range(n_blocks)]


def _block_diag(blocks: list[np.ndarray]) -> np.ndarray:
    c, k = blocks[0].shape[-1], len(blocks)
    out = np.zeros(blocks[0].shape[:-2] + (k * c, k * c))
    for b, B in enumerate(blocks):
        out[..., b * c:(b + 1) * c, b * c:(b + 1) * c] = B
    return out


class BlockTangentSpace(TransformerMixin, BaseEstimator):
    """Tangent space of each diagonal block of block-diagonal SPD matrices, side by side.

    The tangent space of the whole matrix would hold ``(k c)(k c + 1) / 2`` features, all but
    ``k c (c + 1) / 2`` of them zero; this keeps the blocks' own (pyRiemann
    :class:`~pyriemann.tangentspace.TangentSpace`, one per block).

    Parameters
    ----------
    n_blocks : int
        Number of diagonal blocks (sub-bands).
    metric : str
        Metric of the reference point, as in TangentSpace.
    """

    def __init__(self, n_blocks: int = 4, metric: str = "riemann") -> None:
        self.n_blocks = n_blocks
        self.metric = metric

    def fit(self, X, y=None):
        self.spaces_ = [TangentSpace(metric=self.metric).fit(B)
                        for B in _blocks(np.asarray(X, dtype=np.float64), self.n_blocks)]
        return self

    def transform(self, X) -> np.ndarray:
        parts = _blocks(np.asarray(X, dtype=np.float64), self.n_blocks)
        return np.hstack([ts.transform(B) for ts, B in zip(self.spaces_, parts, strict=True)])


class BlockRecenter(Recenter):
    """:class:`control.recentering.Recenter` of block-diagonal covariances, block by block.

    The Riemannian mean, geodesic and inverse square root of block-diagonal matrices are those
    of their blocks, so this gives the numbers of ``Recenter`` on the whole matrix, at the cost
    of ``n_blocks`` small eigendecompositions instead of one large one (four 64-channel bands:
    about 4 times less). It is a ``Recenter``, so the live decoder adapts it online.

    Parameters
    ----------
    n_blocks : int
        Number of diagonal blocks (the sub-bands of :class:`FilterBankCovariances`).
    metric, alpha
        As in :class:`control.recentering.Recenter`.
    """

    def __init__(self, n_blocks: int = 4, metric: str = "riemann",
                 alpha: float | None = 0.05) -> None:
        super().__init__(metric=metric, alpha=alpha)
        self.n_blocks = n_blocks

    def _set_reference(self, M: np.ndarray, n: int) -> None:
        blocks = [(B + B.T) / 2 for B in _blocks(M, self.n_blocks)]
        self.reference_ = _block_diag(blocks)
        self.whitener_ = _block_diag([invsqrtm(B) for B in blocks])
        self.n_averaged_ = int(n)

    def _mean(self, X, sample_weight=None) -> np.ndarray:
        return _block_diag([gmean(B, metric=self.metric, sample_weight=sample_weight)
                            for B in _blocks(X, self.n_blocks)])

    def fit(self, X, y=None, sample_weight=None):
        self._check_params()
        X = _check_covs(X)
        self._set_reference(self._mean(X, sample_weight), len(X))
        self.train_reference_ = self.reference_.copy()
        return self

    def adapt(self, X, sample_weight=None):
        self._check_params()
        X = _check_covs(X, self.reference_.shape[0])
        self._set_reference(self._mean(X, sample_weight), len(X))
        return self

    def transform(self, X) -> np.ndarray:
        X = _check_covs(X, self.reference_.shape[0])
        out = []
        for W, B in zip(_blocks(self.whitener_, self.n_blocks), _blocks(X, self.n_blocks),
                        strict=True):
            Y = W @ B @ W
            out.append((Y + np.swapaxes(Y, -1, -2)) / 2)
        return _block_diag(out)

    def partial_fit(self, X, y=None, alpha: float | None = None):
        self._check_params()
        if not hasattr(self, "reference_"):
            return self.fit(X)
        X = _check_covs(X, self.reference_.shape[0])
        step = self._step(alpha)
        Ms, n = _blocks(self.reference_, self.n_blocks), self.n_averaged_
        Ms = [M.copy() for M in Ms]
        for C in X:
            a = 1.0 / (n + 1) if step is None else float(step)
            for b, Cb in enumerate(_blocks(C, self.n_blocks)):
                M = geodesic(Ms[b], Cb, a, metric=self.metric)
                Ms[b] = (M + M.T) / 2
            n += 1
        self._set_reference(_block_diag(Ms), n)
        return self
