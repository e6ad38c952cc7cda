"""Unsupervised Riemannian re-centring of covariance pipelines, for a new session or person.

A covariance matrix of EEG drifts between sessions (electrodes sit elsewhere, impedances and
gains change) and differs between people, mostly by a congruence ``C -> A C A'`` that moves
the whole cloud of a session's covariances on the manifold while keeping its shape. Whitening
every covariance by its own session's mean, ``C -> M^-1/2 C M^-1/2`` (Zanini et al. 2018; what
:class:`pyriemann.transfer.TLCenter` does per domain), brings every session's cloud back to the
identity, and the mean needs no labels: rest periods, or any windows, of the new session give it.

:class:`Recenter` is that whitening as one step of a scikit-learn pipeline, right after the
covariance estimator. ``fit`` takes the training session's mean as the reference; ``adapt``
re-estimates the reference from a batch of the new session, ``partial_fit`` moves it along the
geodesic towards each new covariance while decoding (a running mean, or an exponentially
forgetting one with a fixed step). :class:`pyriemann.transfer.TLCenter` itself is not used
because it needs domain-encoded labels in ``fit``, which a pipeline over raw windows cannot
carry, and it has no online update; the means, geodesics and matrix square roots are
pyRiemann's.

:func:`find_recenter`, :func:`pipeline_covariances`, :func:`fit_with_reference` and
:func:`update_pipeline` apply it to a whole fitted pipeline (windows in, as the online decoder
feeds them).
"""

from __future__ import annotations

import numpy as np
from pyriemann.geometry.base import invsqrtm
from pyriemann.geometry.geodesic import geodesic
from pyriemann.geometry.mean import gmean
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.pipeline import Pipeline

METRICS = ("riemann", "logeuclid")


def _check_covs(X, n_channels: int | None = None) -> np.ndarray:
    X = np.asarray(X, dtype=np.float64)
    if X.ndim == 2:
        X = X[None]
    if X.ndim != 3 or X.shape[1] != X.shape[2] or len(X) == 0:
        raise ValueError(
            f"Re-centring takes covariance matrices of shape (n, n_channels, n_channels), got "
            f"{X.shape}; put Recenter right after the covariance step.")
    if n_channels is not None and X.shape[1] != n_channels:
        raise ValueError(
            f"These covariances have {X.shape[1]} channels but the reference has {n_channels}; "
            "re-centre with windows of the decoder's montage.")
    if not np.all(np.isfinite(X)):
        raise ValueError("Some covariances hold NaN or infinite values; drop the windows of "
                         "a lost or railing signal before re-centring.")
    return X


class Recenter(TransformerMixin, BaseEstimator):
    """Whiten covariance matrices by a reference mean: ``C -> M^-1/2 C M^-1/2``.

    Parameters
    ----------
    metric : {"riemann", "logeuclid"}
        Mean and geodesic used for the reference. ``"riemann"`` (affine-invariant) is exact:
        the whitened training covariances have the identity as their Riemannian mean, so
        tangent space and MDM decoders behave on them as on the raw covariances, and a
        congruence of the channels moves the mean with it. ``"logeuclid"`` is a closed form
        (one matrix logarithm per covariance instead of ~10 iterations of them), several times
        faster on many windows, and only approximately invariant.
    alpha : float or None
        Step of :meth:`partial_fit` along the geodesic from the reference towards each new
        covariance. A float in (0, 1] forgets exponentially (the reference follows the last
        ~``1/alpha`` windows, which tracks a drifting session); ``None`` uses ``1/(n+1)`` with
        ``n`` the number of covariances the reference already averages, the recursive
        (inductive) mean, which converges to the batch mean of everything seen.

    Attributes
    ----------
    reference_ : ndarray, shape (n_channels, n_channels)
        The current reference ``M``.
    train_reference_ : ndarray, shape (n_channels, n_channels)
        The reference set by :meth:`fit` (what the downstream classifier was trained with).
    whitener_ : ndarray, shape (n_channels, n_channels)
        ``M^-1/2``, kept so that transforming a window costs two matrix products.
    n_averaged_ : int
        Number of covariances the current reference averages (for ``alpha=None``).
    """

    def __init__(self, metric: str = "riemann", alpha: float | None = 0.05) -> None:
        self.metric = metric
        self.alpha = alpha

    def _check_params(self) -> None:
        if self.metric not in METRICS:
            raise ValueError(f"Unknown metric {self.metric!r}; use one of {', '.join(METRICS)}.")
        if self.alpha is not None and not 0 < float(self.alpha) <= 1:
            raise ValueError(f"alpha must be in (0, 1] or None, got {self.alpha}.")

    def _set_reference(self, M: np.ndarray, n: int) -> None:
        # Symmetrise: the products below keep M symmetric only up to rounding, and an
        # asymmetric M gives a complex square root.
        self.reference_ = (M + M.T) / 2
        self.whitener_ = invsqrtm(self.reference_)
        self.n_averaged_ = int(n)

    def fit(self, X, y=None, sample_weight=None) -> Recenter:
        """Take the mean of the training covariances as the reference (``y`` is unused).

        Parameters
        ----------
        X : ndarray, shape (n_matrices, n_channels, n_channels)
            SPD matrices.
        y : None
            Ignored; present for the pipeline.
        sample_weight : ndarray or None
            Weight of each matrix in the mean.

        Returns
        -------
        Recenter
            self.
        """
        self._check_params()
        X = _check_covs(X)
        self._set_reference(gmean(X, metric=self.metric, sample_weight=sample_weight), len(X))
        self.train_reference_ = self.reference_.copy()
        return self

    def transform(self, X) -> np.ndarray:
        """Whiten by the current reference.

        Parameters
        ----------
        X : ndarray, shape (n_matrices, n_channels, n_channels)

        Returns
        -------
        ndarray, shape (n_matrices, n_channels, n_channels)
            ``M^-1/2 X M^-1/2``, symmetric.
        """
        X = _check_covs(X, self.reference_.shape[0])
        W = self.whitener_
        out = W @ X @ W
        return (out + np.swapaxes(out, -1, -2)) / 2

    def adapt(self, X, sample_weight=None) -> Recenter:
        """Re-estimate the reference from a batch of a new session (unsupervised).

        Parameters
        ----------
        X : ndarray, shape (n_matrices, n_channels, n_channels)
            Covariances of the new session: rest periods, or any windows.
        sample_weight : ndarray or None
            Weight of each matrix in the mean.

        Returns
        -------
        Recenter
            self, whitening by the new session's mean from now on.
        """
        self._check_params()
        X = _check_covs(X, self.reference_.shape[0])
        self._set_reference(gmean(X, metric=self.metric, sample_weight=sample_weight), len(X))
        return self

    def _step(self, alpha: float | None) -> float | None:
        """The step of a :meth:`partial_fit` call (``alpha`` overrides the estimator's)."""
        step = self.alpha if alpha is None else alpha
        if step is not None and not 0 < float(step) <= 1:
            raise ValueError(f"alpha must be in (0, 1] or None, got {step}.")
        return step

    def partial_fit(self, X, y=None, alpha: float | None = None) -> Recenter:
        """Move the reference towards each covariance of ``X`` in turn (online update).

        Each step is ``M <- geodesic(M, C, a)`` with ``a = alpha`` (argument, else the
        estimator's ``alpha``), or ``1/(n+1)`` when both are None. Called before :meth:`fit`,
        it starts from the mean of ``X``, as scikit-learn's ``partial_fit`` does.

        Parameters
        ----------
        X : ndarray, shape (n_matrices, n_channels, n_channels) or (n_channels, n_channels)
            New covariances, oldest first.
        y : None
            Ignored.
        alpha : float or None
            Step for this call (overrides the estimator's ``alpha``).

        Returns
        -------
        Recenter
            self.
        """
        self._check_params()
        if not hasattr(self, "reference_"):
            return self.fit(X)
        X = _check_covs(X, self.reference_.shape[0])
        step = self._step(alpha)
        M, n = self.reference_, self.n_averaged_
        for C in X:
            a = 1.0 / (n + 1) if step is None else float(step)
            M = geodesic(M, C, a, metric=self.metric)
            M = (M + M.T) / 2
            n += 1
        self._set_reference(M, n)
        return self

    def reset(self, forget: bool = True) -> Recenter:
        """Go back to the training reference.

        Parameters
        ----------
        forget : bool
            Count the reference as averaging nothing, so that with ``alpha=None`` the next
            :meth:`partial_fit` builds the running mean of the new session alone (its first
            covariance replaces the reference).

        Returns
        -------
        Recenter
            self.
        """
        self._set_reference(self.train_reference_.copy(), 0 if forget else self.n_averaged_)
        return self


def find_recenter(pipeline) -> tuple[int, Recenter]:
    """The :class:`Recenter` step of a pipeline and its index.

    Raises
    ------
    ValueError
        If the pipeline has no top-level :class:`Recenter` step.
    """
    steps = getattr(pipeline, "steps", None) or []
    for i, (_, est) in enumerate(steps):
        if isinstance(est, Recenter):
            return i, est
    name = type(pipeline).__name__
    raise ValueError(
        f"The decoder ({name}) has no re-centring step, so it cannot adapt to a new session; "
        "train a re-centred pipeline (rc_ts_lr, rc_mdm or rc_csp_lda).")


def pipeline_covariances(pipeline: Pipeline, X) -> np.ndarray:
    """Run raw windows through the steps before :class:`Recenter`: the covariances it sees.

    Parameters
    ----------
    pipeline : Pipeline
        Fitted pipeline with a :class:`Recenter` step.
    X : ndarray, shape (n_windows, n_channels, n_times)
        Raw windows, as the pipeline's ``predict_proba`` takes them.
    """
    idx, _ = find_recenter(pipeline)
    return pipeline[:idx].transform(np.asarray(X, dtype=np.float64))


def fit_with_reference(pipeline: Pipeline, X, y, X_reference) -> Pipeline:
    """Fit a re-centred pipeline whose training reference comes from other windows.

    A session re-centred later from its rest periods must have been trained with the rest
    periods of the training session as reference: whitening task windows by the mean of task
    windows, and the new session by the mean of its rest, would leave the difference between
    rest and task (the ERD itself) as a shift.

    Parameters
    ----------
    pipeline : Pipeline
        Unfitted pipeline with a :class:`Recenter` step.
    X : ndarray, shape (n_windows, n_channels, n_times)
        Labelled training windows.
    y : array-like, shape (n_windows,)
        Their labels.
    X_reference : ndarray, shape (n_ref, n_channels, n_times)
        Windows whose mean becomes the training reference (e.g. the rest periods).

    Returns
    -------
    Pipeline
        ``pipeline``, fitted.
    """
    idx, rc = find_recenter(pipeline)
    X = np.asarray(X, dtype=np.float64)
    head, tail = pipeline[:idx], pipeline[idx + 1:]  # slices share the step objects
    covs = head.fit(X, y).transform(X)
    rc.fit(head.transform(np.asarray(X_reference, dtype=np.float64)))
    tail.fit(rc.transform(covs), y)
    return pipeline


def update_pipeline(pipeline: Pipeline, X, alpha: float | None = None) -> Recenter:
    """Online update of a fitted pipeline's reference from raw windows (in place).

    Parameters
    ----------
    pipeline : Pipeline
        Fitted pipeline with a :class:`Recenter` step (e.g. a bundle's).
    X : ndarray, shape (n_windows, n_channels, n_times) or (n_channels, n_times)
        New windows, oldest first (rest windows, or every decoded window).
    alpha : float or None
        Step for this update (default: the step's own ``alpha``).

    Returns
    -------
    Recenter
        The updated step.
    """
    X = np.asarray(X, dtype=np.float64)
    _, rc = find_recenter(pipeline)
    return rc.partial_fit(pipeline_covariances(pipeline, X if X.ndim == 3 else X[None]),
                          alpha=alpha)
