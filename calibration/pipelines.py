"""Decoding pipelines as scikit-learn estimators working on raw windows.

Every pipeline takes ``X`` of shape (n_windows, n_channels, n_times), in the units of the
recording it was trained on (the project trains in microvolts), band-pass filters each window
itself (:class:`BandPass`), and ends in a classifier with ``predict_proba``. Filtering inside
the pipeline means the online decoder feeds it exactly what training saw: a window of raw
samples, nothing else to reproduce.

Motor imagery: CSP+LDA, filter-bank CSP+LDA, Riemannian tangent space + logistic regression and
MDM (covariances with 'oas' shrinkage), and their re-centred variants ``rc_csp_lda``,
``rc_ts_lr``, ``rc_mdm`` (:class:`control.recentering.Recenter` after the covariances, so a new
session or person can be re-centred without labels; see :mod:`calibration.adaptation`), and for
asynchronous control ``gated_ts_lr`` (tangent space, then a rest gate times a left/right model,
:class:`control.estimators.RestGatedClassifier`), with ``gated_ts_lrcv``, ``rc_gated_ts_lr``,
``rc_gated_ts_lrcv`` its inner-CV and re-centred variants, and the regularised candidates of
:data:`REGULARISED_PIPELINES` (filter-bank tangent space, inner-CV logistic regression,
shrinkage LDA, electrode selection) tried on real 64-channel EEG (issue 17). SSVEP:
:class:`CCAClassifier` (standard CCA against sine/cosine references) and its filter-bank
variant.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from pyriemann.channelselection import ElectrodeSelection
from pyriemann.classification import MDM
from pyriemann.estimation import Covariances
from pyriemann.spatialfilters import CSP
from pyriemann.tangentspace import TangentSpace
from sklearn.discriminant_analysis import LinearDiscriminantAnalysis
from sklearn.linear_model import LogisticRegression, LogisticRegressionCV
from sklearn.model_selection import KFold
from sklearn.pipeline import Pipeline

from control.estimators import (
    BandPass,
    BlockRecenter,
    BlockTangentSpace,
    CCAClassifier,
    FilterBankCCA,
    FilterBankCovariances,
    OASCovariances,
    RestGatedClassifier,
    SequentialUnion,
)
from control.recentering import Recenter

MI_PIPELINES = ("csp_lda", "fbcsp_lda", "ts_lr", "mdm")
SSVEP_PIPELINES = ("cca", "fbcca")
# Re-centred variants: not default candidates. Without adaptation they decode the training
# session as their plain counterparts do (same cross-validated accuracy, the whitening by the
# training mean cancels out), so trying them in `yume train` would only double its time; they
# pay off when a new session is re-centred (calibration.adaptation).
RECENTERED_PIPELINES = ("rc_csp_lda", "rc_ts_lr", "rc_mdm")
# Asynchronous motor imagery only (their training windows hold rest): a rest-vs-movement gate
# times the movement classifier (control.estimators.RestGatedClassifier).
ASYNC_PIPELINES = ("gated_ts_lr", "gated_ts_lrcv", "rc_gated_ts_lr", "rc_gated_ts_lrcv")
# Candidates for real EEG with many channels (issue 17): the 64-channel tangent space has 2080
# dimensions for a few hundred windows, so these regularise it (C chosen by inner CV, shrinkage
# LDA, a supervised electrode subset) or split it by sub-band. Not default candidates; try them
# with `yume evaluate --async-pipelines ...` (BENCHMARKS.md says what they gave).
REGULARISED_PIPELINES = ("fbts_lr", "ts_lrcv", "ts_slda", "es_ts_lr",
                         "rc_fbts_lr", "rc_ts_lrcv", "rc_ts_slda", "rc_es_ts_lr")
PIPELINES = MI_PIPELINES + SSVEP_PIPELINES
ALL_PIPELINES = PIPELINES + RECENTERED_PIPELINES + ASYNC_PIPELINES + REGULARISED_PIPELINES
# Sub-bands of the filter-bank CSP (Ang et al. 2008 used 4 Hz bands from 4 to 40 Hz).
FBCSP_BANDS = ((8.0, 12.0), (12.0, 16.0), (16.0, 20.0), (20.0, 24.0), (24.0, 30.0))
# Sub-bands of the filter-bank tangent space: mu, low and high beta; wider at the top, where a
# 4 Hz band of a 1 s window holds too few cycles of power change to estimate apart.
FBTS_BANDS = ((8.0, 12.0), (12.0, 16.0), (16.0, 20.0), (20.0, 30.0))
# Inverse regularisation strengths tried by the inner CV of the *_lrcv pipelines.
LRCV_CS = tuple(float(c) for c in np.logspace(-3, 1, 9))


def _covariances() -> Covariances:
    # Shrinkage keeps covariances well conditioned with many channels and short windows.
    return OASCovariances(estimator="oas")


def _lrcv() -> LogisticRegressionCV:
    # Folds in the order of the windows, not shuffled: training windows come in time order and
    # overlap (0.5 s stride), so a shuffled fold would test on the neighbours of its training
    # windows and favour the weakest regularisation.
    return LogisticRegressionCV(Cs=list(LRCV_CS), l1_ratios=(0.0,), cv=KFold(5),
                                scoring="neg_log_loss", use_legacy_attributes=False,
                                max_iter=1000)


def make_pipeline(name: str, sfreq: float, band: tuple[float, float] = (8.0, 30.0),
                  n_components: int = 6, freqs: dict | None = None,
                  n_harmonics: int = 3, n_electrodes: int = 16) -> Pipeline:
    """Build an unfitted decoding pipeline by name.

    Parameters
    ----------
    name : str
        One of :data:`ALL_PIPELINES`: ``"csp_lda"``, ``"fbcsp_lda"``, ``"ts_lr"``, ``"mdm"``
        (motor imagery), ``"cca"``, ``"fbcca"`` (SSVEP), ``"rc_csp_lda"``, ``"rc_ts_lr"``,
        ``"rc_mdm"`` (re-centred motor imagery), and the regularised candidates of
        :data:`REGULARISED_PIPELINES`: ``"fbts_lr"`` (tangent space per sub-band of
        :data:`FBTS_BANDS`, concatenated, logistic regression), ``"ts_lrcv"`` (tangent space,
        logistic regression with C chosen by a 5-fold inner CV over :data:`LRCV_CS` in time
        order), ``"ts_slda"`` (tangent space, LDA with Ledoit-Wolf shrinkage), ``"es_ts_lr"``
        (the ``n_electrodes`` channels whose class means lie furthest apart, pyRiemann's
        :class:`~pyriemann.channelselection.ElectrodeSelection`, then TS+LR), and ``rc_``
        before each for its re-centred variant (``rc_fbts_lr``: the sub-band covariances as
        one block-diagonal matrix, re-centred band by band). Asynchronous only (``y`` must hold
        rest): ``"gated_ts_lr"``, ``"gated_ts_lrcv"`` (both of its models with C by inner CV)
        and their ``rc_`` variants.
    sfreq : float
        Sampling rate of the windows the pipeline will see.
    band : (float, float)
        Pass band (Hz); for FBCSP the sub-bands of :data:`FBCSP_BANDS` inside it, for
        filter-bank CCA the upper edge of every sub-band.
    n_components : int
        Number of CSP filters (per sub-band for FBCSP).
    freqs : dict or None
        SSVEP only: class label -> stimulation frequency (Hz); by default parsed from labels such
        as ``"ssvep:12.0"`` or ``"12Hz"``.
    n_harmonics : int
        SSVEP only: harmonics in the CCA references.
    n_electrodes : int
        ``es_ts_lr`` only: channels kept by the electrode selection.

    Returns
    -------
    Pipeline
        A scikit-learn pipeline with ``predict_proba`` on (n_windows, n_channels, n_times).
    """
    l_freq, h_freq = float(band[0]), float(band[1])
    bands = [(lo, hi) for lo, hi in FBTS_BANDS if lo >= l_freq - 1e-9 and hi <= h_freq + 1e-9]
    if len(bands) < 2:
        bands = [(l_freq, (l_freq + h_freq) / 2), ((l_freq + h_freq) / 2, h_freq)]
    if name == "rc_fbts_lr":
        # Every sub-band's covariance in one block-diagonal matrix, so that one re-centring
        # step (the one the live decoder adapts) whitens each band by its own mean.
        return Pipeline([("cov", FilterBankCovariances(sfreq, tuple(bands))),
                         ("recenter", BlockRecenter(n_blocks=len(bands))),
                         ("ts", BlockTangentSpace(n_blocks=len(bands))), ("lr", _lrcv())])
    if name.startswith("rc_") and name in ALL_PIPELINES:
        # The plain pipeline with the re-centring step right after the covariances (after the
        # electrode selection, if any: the reference is then a mean of the kept channels).
        plain = make_pipeline(name[3:], sfreq, band, n_components=n_components,
                              n_electrodes=n_electrodes)
        steps = list(plain.steps)
        names = [n for n, _ in steps]
        steps.insert(names.index("elec" if "elec" in names else "cov") + 1,
                     ("recenter", Recenter()))
        return Pipeline(steps)
    if name == "csp_lda":
        steps = [("filter", BandPass(sfreq, l_freq, h_freq)), ("cov", _covariances()),
                 ("csp", CSP(nfilter=n_components, log=True)),
                 ("lda", LinearDiscriminantAnalysis())]
    elif name == "fbcsp_lda":
        bands = [(lo, hi) for lo, hi in FBCSP_BANDS if lo >= l_freq - 1e-9 and hi <= h_freq + 1e-9]
        if len(bands) < 2:
            bands = [(l_freq, (l_freq + h_freq) / 2), ((l_freq + h_freq) / 2, h_freq)]
        branches = [
            (f"b{lo:g}_{hi:g}", Pipeline([("filter", BandPass(sfreq, lo, hi)),
                                           ("cov", _covariances()),
                                           ("csp", CSP(nfilter=min(n_components, 4), log=True))]))
            for lo, hi in bands
        ]
        steps = [("bank", SequentialUnion(branches)),
                 ("lda", LinearDiscriminantAnalysis(solver="lsqr", shrinkage="auto"))]
    elif name == "ts_lr":
        steps = [("filter", BandPass(sfreq, l_freq, h_freq)), ("cov", _covariances()),
                 ("ts", TangentSpace(metric="riemann")),
                 ("lr", LogisticRegression(C=1.0, max_iter=1000))]
    elif name == "fbts_lr":
        branches = [
            (f"b{lo:g}_{hi:g}", Pipeline([("filter", BandPass(sfreq, lo, hi)),
                                           ("cov", _covariances()),
                                           ("ts", TangentSpace(metric="riemann"))]))
            for lo, hi in bands
        ]
        steps = [("bank", SequentialUnion(branches)), ("lr", _lrcv())]
    elif name in ("ts_lrcv", "ts_slda", "es_ts_lr"):
        head = [("filter", BandPass(sfreq, l_freq, h_freq)), ("cov", _covariances())]
        if name == "es_ts_lr":
            head.append(("elec", ElectrodeSelection(nelec=n_electrodes, metric="riemann")))
        clf = {"ts_lrcv": ("lr", _lrcv()),
               "ts_slda": ("lda", LinearDiscriminantAnalysis(solver="lsqr", shrinkage="auto")),
               "es_ts_lr": ("lr", LogisticRegression(C=1.0, max_iter=1000))}[name]
        steps = [*head, ("ts", TangentSpace(metric="riemann")), clf]
    elif name in ("gated_ts_lr", "gated_ts_lrcv"):  # asynchronous only: y must hold rest
        def lr():
            return _lrcv() if name.endswith("cv") else LogisticRegression(C=1.0, max_iter=1000)
        steps = [("filter", BandPass(sfreq, l_freq, h_freq)), ("cov", _covariances()),
                 ("ts", TangentSpace(metric="riemann")),
                 ("gate", RestGatedClassifier(lr(), lr()))]
    elif name == "mdm":
        steps = [("filter", BandPass(sfreq, l_freq, h_freq)), ("cov", _covariances()),
                 ("mdm", MDM(metric="riemann"))]
    elif name == "cca":
        steps = [("cca", CCAClassifier(sfreq, freqs=freqs, n_harmonics=n_harmonics,
                                       l_freq=l_freq, h_freq=h_freq))]
    elif name == "fbcca":
        steps = [("cca", FilterBankCCA(sfreq, freqs=freqs, n_harmonics=n_harmonics,
                                       l_freq=l_freq, h_freq=h_freq))]
    else:
        raise ValueError(f"Unknown pipeline {name!r}; use one of {', '.join(ALL_PIPELINES)}.")
    return Pipeline(steps)


def pipeline_names(paradigm: str) -> Sequence[str]:
    """Pipelines that make sense for a paradigm (``"mi"`` or ``"ssvep"``)."""
    return SSVEP_PIPELINES if paradigm == "ssvep" else MI_PIPELINES
