"""A simulated participant: realistic EEG whose "intent" drives motor-imagery and SSVEP signatures.

The signal is a sum of sources placed on the scalp and smeared over neighbouring electrodes by a
Gaussian volume-conduction kernel (so channels are correlated, as in real EEG):

* spatially correlated 1/f (pink) background;
* posterior alpha at the subject's individual alpha frequency (IAF);
* sensorimotor mu (8-13 Hz) and beta (13-30 Hz) rhythms under C3, C4 and Cz whose amplitude the
  intent modulates: ERD over C4 for ``left_hand``, over C3 for ``right_hand``, over Cz for
  ``feet`` (with ERS of the hand areas), ramped over ``ramp_s`` so onsets are physiological;
* SSVEP at the commanded frequency and its second harmonic over the occipital cortex;
* 50 Hz line noise, eye blinks (frontal), muscle bursts (temporal, broadband) and electrode
  pops (a step on one electrode that decays as its impedance settles).

The default is about as hard to decode as a person (two-class motor imagery scores ~0.7-0.85 by
cross-validation, as real data does): the ERD is weak and fails on some attempts, the sources sit
and point differently in each person, the rhythms wax and wane in bursts, and electrode gains and
background covariance drift within a session and from one ``session`` to the next.
:meth:`ParticipantConfig.easy` turns all of that off (the near-perfectly decodable participant
of earlier versions, for tests of plumbing rather than of decoding).

Every random process draws from its own generator in time order, so the output depends only on
the seed and the intent schedule, never on how the samples are chunked.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from pylsl import local_clock
from scipy import signal

from bci.montage import angular_distance, channel_positions, montage_channels
from bci.stream import AcquisitionError, Source, SourceState, StreamInfo

logger = logging.getLogger(__name__)

MI_INTENTS = ("rest", "left_hand", "right_hand", "feet")
EVENTS = ("jaw_clench", "double_blink", "blink")
_EXTRA = {"eog": ("EOG", "eog"), "emg": ("EMG", "emg")}

# Voss-McCartney style 1/f filter (Kellet/"pinking" IIR), flat to within 0.5 dB of 1/f over
# three decades: cheaper than FFT synthesis and it keeps state across chunks.
_PINK_B = np.array([0.049922035, -0.095993537, 0.050612699, -0.004408786])
_PINK_A = np.array([1.0, -2.494956002, 2.017265875, -0.522189400])


@dataclass(frozen=True)
class ParticipantConfig:
    """Everything that shapes the simulated EEG (all amplitudes in microvolts).

    Parameters
    ----------
    sfreq : float
        Sampling rate in Hz.
    montage : str or sequence of str
        ``"standard_32"`` (default), ``"standard_64"`` or a list of 10-20/10-10 names.
    ch_names : sequence of str or None
        Overrides ``montage`` when given.
    snr : float
        Scales the task-related sources (mu/beta rhythms, SSVEP) against the background.
        At 1.0 the default participant scores about 0.7-0.85 for left/right hand by
        cross-validation (as real data does) and :meth:`easy` separates rest/left/right/feet at
        >= 90 % with 2-4 s windows; 0 removes every task signature.
    speed : float
        How fast :meth:`SimulatedParticipant.poll` runs relative to the wall clock (2.0 = twice
        real time).
    background_uv, alpha_uv, mu_uv, beta_uv, ssvep_uv : float
        RMS amplitudes of the 1/f background (per channel), posterior alpha, sensorimotor
        mu and beta rhythms, and the SSVEP fundamental at its source.
    line_freq, line_noise_uv : float
        Mains frequency (50 or 60 Hz) and its amplitude (0 disables it).
    blink_rate, muscle_rate : float
        Spontaneous eye blinks and muscle bursts per minute (0 disables them).
    blink_uv, muscle_uv : float
        Peak blink amplitude at Fp1/Fp2; RMS of a muscle burst at T7/T8.
    ramp_s : float
        Time an intent change takes to reach full effect (ERD/ERS and SSVEP onset).
    trial_variability : float
        Relative spread of the ERD depth from one intent onset to the next (0: every attempt
        identical).
    lapse_rate : float
        Fraction of imagery attempts in which attention lapses and the ERD is at most a quarter
        of its usual depth (0-1).
    erd_range : (float, float)
        Range from which the seed draws the subject's ERD depth when ``erd_strength`` is None.
    source_jitter : float
        Person-specific displacement (radians on the head sphere, 0.1 ~ 9 mm) of each source from
        its nominal electrode.
    source_tilt : float
        Person-specific tilt of the sensorimotor sources away from radial: 0 gives a blob under
        the electrode, about 1 a bipolar topography whose peak lies beside it.
    burst_depth, burst_s : float
        Spontaneous amplitude fluctuations of the alpha, mu and beta rhythms: SD of their log
        amplitude (0 disables them) and its time constant in seconds.
    session : int
        Recording session (1 = first). With ``drift`` > 0, each later session moves electrode
        gains, cap position and background covariance a step further (a random walk drawn from
        the seed), so the same person differs more from session 1 in session 3 than in 2.
    drift : float
        Scales every drift: between sessions (above) and the slow wander of electrode gains and
        background source strengths within a session (periods of minutes). 0 disables it.
    pop_rate, pop_uv : float
        Electrode pops per minute (0 disables them) and their typical step size.
    iaf, erd_strength, spread : float or None
        Individual alpha frequency (Hz), ERD depth (fraction of the mu/beta amplitude removed,
        0-1) and spatial-spread factor (1 = typical); None draws them from the seed.
    extra_channels : sequence of {"eog", "emg"}
        Adds a vertical EOG channel ("EOG") and/or a jaw-muscle EMG channel ("EMG").
    """

    sfreq: float = 250.0
    montage: str | tuple[str, ...] = "standard_32"
    ch_names: tuple[str, ...] | None = None
    snr: float = 1.0
    speed: float = 1.0
    background_uv: float = 10.0
    alpha_uv: float = 10.0
    mu_uv: float = 10.0
    beta_uv: float = 5.0
    ssvep_uv: float = 6.0
    line_freq: float = 50.0
    line_noise_uv: float = 4.0
    blink_rate: float = 10.0
    blink_uv: float = 150.0
    muscle_rate: float = 2.0
    muscle_uv: float = 15.0
    ramp_s: float = 0.5
    # Realism defaults, tuned so two-class CV scores land where real data does
    # (benchmarks/bench_simulated_realism.py); easy() sets the values of the old participant.
    trial_variability: float = 0.4
    lapse_rate: float = 0.2
    erd_range: tuple[float, float] = (0.35, 0.55)
    source_jitter: float = 0.12
    source_tilt: float = 0.8
    burst_depth: float = 0.5
    burst_s: float = 0.8
    session: int = 1
    drift: float = 1.0
    pop_rate: float = 0.5
    pop_uv: float = 100.0
    iaf: float | None = None
    erd_strength: float | None = None
    spread: float | None = None
    extra_channels: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.sfreq <= 0:
            raise ValueError(f"sfreq must be positive, got {self.sfreq}.")
        if self.speed <= 0:
            raise ValueError(f"speed must be positive, got {self.speed}; 1.0 is real time.")
        if self.snr < 0:
            raise ValueError(f"snr must be >= 0, got {self.snr}.")
        if self.erd_strength is not None and not 0 <= self.erd_strength <= 1:
            raise ValueError(f"erd_strength must be within [0, 1], got {self.erd_strength}.")
        lo, hi = (float(v) for v in self.erd_range)
        if not 0 <= lo <= hi <= 1:
            raise ValueError(f"erd_range must be (low, high) within [0, 1], got {self.erd_range}.")
        object.__setattr__(self, "erd_range", (lo, hi))
        if not 0 <= self.lapse_rate <= 1:
            raise ValueError(f"lapse_rate must be within [0, 1], got {self.lapse_rate}.")
        if int(self.session) != self.session or self.session < 1:
            raise ValueError(f"session must be an integer >= 1 (1 = first), got {self.session}.")
        object.__setattr__(self, "session", int(self.session))
        for name in ("trial_variability", "source_jitter", "source_tilt", "burst_depth", "drift",
                     "pop_rate", "blink_rate", "muscle_rate"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}.")
        if self.burst_s <= 0:
            raise ValueError(f"burst_s must be positive, got {self.burst_s}.")
        if self.ch_names is not None:
            object.__setattr__(self, "ch_names", tuple(self.ch_names))
        if not isinstance(self.montage, str):
            object.__setattr__(self, "montage", tuple(self.montage))
        extras = tuple(str(e).lower() for e in self.extra_channels)
        bad = [e for e in extras if e not in _EXTRA]
        if bad:
            raise ValueError(f"Unknown extra channel(s) {bad}; use 'eog' and/or 'emg'.")
        object.__setattr__(self, "extra_channels", extras)
        self.eeg_names  # noqa: B018 - validates the montage/channel names now, not later

    @property
    def eeg_names(self) -> tuple[str, ...]:
        return montage_channels(self.ch_names if self.ch_names is not None else self.montage)

    @classmethod
    def easy(cls, **overrides) -> ParticipantConfig:
        """The near-perfectly decodable participant of earlier versions (same seed, same signal).

        Strong, reliable ERD, sources right under their electrodes, steady rhythms, no drift
        and no electrode pops: for tests of plumbing (latency, streaming, recording) that need
        a decoder that is always right, never for claims about decoding quality.

        Parameters
        ----------
        **overrides
            Any other :class:`ParticipantConfig` field (e.g. ``sfreq``, ``montage``).
        """
        return cls(**{**EASY_PRESET, **overrides})


EASY_PRESET: dict[str, object] = dict(
    trial_variability=0.15, lapse_rate=0.0, erd_range=(0.55, 0.75), source_jitter=0.05,
    source_tilt=0.0, burst_depth=0.0, drift=0.0, pop_rate=0.0)
"""The fields :meth:`ParticipantConfig.easy` sets (everything else keeps its default)."""


@dataclass(frozen=True)
class SubjectTraits:
    """Per-subject physiology drawn from the seed (or fixed by the config)."""

    iaf: float
    mu_freq: float
    beta_freq: float
    erd_strength: float
    spread: float
    ssvep_latency: float


def parse_intent(intent: str) -> tuple[str, float | None]:
    """``("ssvep", 12.0)`` for ``"ssvep:12"``, ``("left_hand", None)`` for ``"left_hand"``.

    Raises
    ------
    ValueError
        If the intent is not one of the known ones.
    """
    text = str(intent).strip().lower()
    if text in MI_INTENTS:
        return text, None
    if text.startswith("ssvep:"):
        try:
            freq = float(text.split(":", 1)[1])
        except ValueError:
            freq = float("nan")
        if np.isfinite(freq) and freq > 0:
            return "ssvep", freq
    raise ValueError(
        f"Unknown intent {intent!r}; use one of {', '.join(MI_INTENTS)} or 'ssvep:<Hz>' "
        "(e.g. 'ssvep:12.0')."
    )


class IntentScript:
    """A timetable of intents, ``[(seconds_after_start, intent), ...]``, applied sample-exactly.

    Parameters
    ----------
    steps : sequence of (float, str)
        Times (seconds of signal since the participant started streaming) and intents.
    """

    def __init__(self, steps: Sequence[tuple[float, str]]) -> None:
        steps = sorted((float(t), str(i)) for t, i in steps)
        for t, i in steps:
            parse_intent(i)
            if t < 0:
                raise ValueError(f"Intent times must be >= 0 s, got {t}.")
        self.steps: list[tuple[float, str]] = steps

    def __len__(self) -> int:
        return len(self.steps)

    def __repr__(self) -> str:
        return f"IntentScript({self.steps!r})"


class _Ramp:
    """Linear transition of named gains from their value at a change to new targets."""

    def __init__(self, n_ramp: int) -> None:
        self.n_ramp = max(int(n_ramp), 1)
        self.start: dict[str, float] = {}
        self.target: dict[str, float] = {}
        self.t0 = 0

    def value(self, key: str, idx: np.ndarray) -> np.ndarray:
        a = self.start.get(key, 0.0)
        b = self.target.get(key, 0.0)
        if a == b:
            return np.full(idx.shape, b)
        frac = np.clip((idx - self.t0) / self.n_ramp, 0.0, 1.0)
        return a + (b - a) * frac

    def retarget(self, targets: dict[str, float], now: int) -> None:
        keys = set(self.start) | set(self.target) | set(targets)
        current = {k: float(self.value(k, np.array([now]))[0]) for k in keys}
        # forget SSVEP frequencies that have faded out completely (bounded state)
        self.start = {k: v for k, v in current.items() if v != 0.0 or targets.get(k, 0.0) != 0.0}
        self.target = {k: targets.get(k, 0.0) for k in self.start}
        self.t0 = now


def _session_state(seed: int, session: int, n_eeg: int, drift: float) -> dict[str, np.ndarray]:
    """Electrode gains, cap offset, background weights and slow-wander terms of one session.

    Sessions are a random walk from session 1: session ``k`` adds steps ``2..k``, each drawn from
    its own generator (``seed``, step), so session 3 of a person is session 2 plus one more step
    and drifts further from session 1 than session 2 does.
    """
    gain_log = np.zeros(n_eeg)
    bg_log = np.zeros(n_eeg)
    cap = np.zeros(3)
    for step in range(2, session + 1):
        rng = np.random.default_rng([seed, 0x5E55, step])
        gain_log += rng.normal(0.0, 0.25, n_eeg)  # re-gelled electrodes: new impedances
        cap += rng.normal(0.0, 0.05, 3)  # ~4 mm placement error per axis
        bg_log += rng.normal(0.0, 0.45, n_eeg)  # another vigilance/state: other background
    slow = np.random.default_rng([seed, 0x510, session])
    return dict(
        gain=np.exp(drift * gain_log),
        cap_shift=drift * cap,
        bg_gain=np.exp(drift * bg_log),
        # within the session: each electrode's gain and each background source's strength
        # follows a sinusoid of a few minutes' period (gel drying, drowsiness)
        gain_amp=drift * slow.uniform(0.03, 0.08, n_eeg),
        gain_period=slow.uniform(120.0, 900.0, n_eeg),
        gain_phase=slow.uniform(0.0, 2 * np.pi, n_eeg),
        bg_amp=drift * slow.uniform(0.1, 0.3, n_eeg),
        bg_period=slow.uniform(180.0, 900.0, n_eeg),
        bg_phase=slow.uniform(0.0, 2 * np.pi, n_eeg),
    )


def _single_blas_thread(active: bool):
    """One BLAS thread for long generations: the small matrix products here run ~3x slower
    when OpenBLAS spreads them over cores that other work is using."""
    if active:
        try:
            from threadpoolctl import threadpool_limits

            return threadpool_limits(1, user_api="blas")
        except ImportError:  # pragma: no cover - threadpoolctl ships with scikit-learn
            pass
    return contextlib.nullcontext()


class SimulatedParticipant(Source):
    """A simulated EEG participant, usable as a live :class:`~bci.stream.Source`.

    Parameters
    ----------
    config : ParticipantConfig
        Signal and montage settings.
    seed : int
        Seeds the subject's traits and every random process: same seed, same intents, same
        signal.

    Notes
    -----
    :meth:`poll` returns the samples that became due since the last call, by the wall clock
    times ``config.speed``, as float32 microvolts; their timestamps are the LSL-clock times at
    which they became due (``1 / (sfreq * speed)`` apart). :meth:`generate` produces samples
    immediately, advancing the same state.
    """

    def __init__(self, config: ParticipantConfig | None = None, seed: int = 0) -> None:
        self.config = config = config if config is not None else ParticipantConfig()
        self.seed = int(seed)
        sfreq = float(config.sfreq)
        eeg = config.eeg_names
        extras = [_EXTRA[e] for e in config.extra_channels]
        self.info = StreamInfo(
            name="Simulated participant",
            sfreq=sfreq,
            ch_names=tuple(eeg) + tuple(n for n, _ in extras),
            ch_types=("eeg",) * len(eeg) + tuple(t for _, t in extras),
            units="uV",
            source_id=f"yume-simulated-{self.seed}",
            stream_type="EEG",
            extras={"manufacturer": "Yume BCI", "model": "simulated participant"},
        )
        self.state = SourceState.IDLE
        seq = np.random.SeedSequence(self.seed)
        traits_rng, bg, osc, onset, wave, trial = (np.random.default_rng(s)
                                                   for s in seq.spawn(6))
        self._rng_bg, self._rng_osc, self._rng_onset, self._rng_wave = bg, osc, onset, wave
        self._rng_trial = trial  # how well each imagery attempt works
        # The realism processes draw from generators of their own, spawned after the first six,
        # so easy() (all of them off) gives exactly the signal of the earlier participant.
        person, env, lapse, pop = (np.random.default_rng(s) for s in seq.spawn(4))
        self._rng_env, self._rng_lapse, self._rng_pop = env, lapse, pop
        # draw every trait, then apply overrides: fixing one trait leaves the others unchanged
        drawn = dict(iaf=float(np.clip(traits_rng.normal(10.0, 0.8), 8.5, 12.0)),
                     mu_shift=float(traits_rng.normal(0.5, 0.4)),
                     beta_freq=float(traits_rng.uniform(18.0, 24.0)),
                     erd_frac=float(traits_rng.uniform(0.0, 1.0)),
                     spread=float(traits_rng.uniform(0.85, 1.15)),
                     ssvep_latency=float(traits_rng.uniform(0.08, 0.14)))
        iaf = config.iaf if config.iaf is not None else drawn["iaf"]
        lo, hi = config.erd_range
        drawn["erd_strength"] = lo + (hi - lo) * drawn["erd_frac"]
        self.traits = SubjectTraits(
            iaf=iaf,
            mu_freq=float(np.clip(iaf + drawn["mu_shift"], 8.5, 12.5)),
            beta_freq=drawn["beta_freq"],
            erd_strength=(config.erd_strength if config.erd_strength is not None
                          else drawn["erd_strength"]),
            spread=config.spread if config.spread is not None else drawn["spread"],
            ssvep_latency=drawn["ssvep_latency"],
        )
        self._build_sources(eeg, traits_rng, person)
        self._n = 0  # samples generated so far (the state's clock)
        self._ramp = _Ramp(round(config.ramp_s * sfreq))
        self._intent = "rest"
        self._ramp.retarget(self._targets("rest", None), 0)
        self._pending: list[tuple[int, np.ndarray]] = []  # (start sample, (n_ch, L) waveform)
        self.events: deque[tuple[float, str]] = deque(maxlen=10_000)  # (signal time s, kind)
        self._lock = threading.RLock()
        self._t0 = 0.0
        self._n_start = 0
        self._script: list[tuple[int, str]] = []
        self._script_steps: list[tuple[float, str]] = []
        self.max_catchup_s = 10.0

    # ------------------------------------------------------------------ set-up
    def _build_sources(self, eeg: Sequence[str], rng: np.random.Generator,
                       person: np.random.Generator) -> None:
        cfg, tr = self.config, self.traits
        sfreq, nyq = cfg.sfreq, cfg.sfreq / 2
        n_eeg, n_all = len(eeg), self.info.n_channels
        self._n_eeg = n_eeg
        pos = channel_positions(eeg)
        session = _session_state(self.seed, cfg.session, n_eeg, cfg.drift)
        # the cap sits a little differently each session: every source moves against the
        # electrodes by the same small offset
        cap_shift = session["cap_shift"]

        def kernel(src_names: Sequence[str], sigma: float, jitter: float | None = None,
                   tilt: float = 0.0) -> np.ndarray:
            src = channel_positions(src_names)
            noise = rng.normal(0.0, 1.0, src.shape)  # individual anatomy
            scale = cfg.source_jitter if jitter is None else jitter
            src = src + scale * noise + cap_shift
            src /= np.linalg.norm(src, axis=1, keepdims=True)
            width = sigma * tr.spread
            mix = np.exp(-angular_distance(pos, src) ** 2 / (2 * width ** 2))
            if tilt:
                # A source in a sulcus points partly along the scalp: its field is stronger on
                # one side and reverses on the other, so the best electrode is not the nominal
                # one and differs from person to person.
                d = person.normal(0.0, 1.0, src.shape)
                d -= np.sum(d * src, axis=1, keepdims=True) * src  # tangential direction
                d /= np.linalg.norm(d, axis=1, keepdims=True) + 1e-12
                proj = (pos @ d.T - np.sum(src * d, axis=1)) / width
                mix = mix * (1.0 + tilt * person.uniform(0.5, 1.0, len(src_names)) * proj)
                mix /= np.abs(mix).max(axis=0, keepdims=True)
            full = np.zeros((n_all, len(src_names)))
            full[:n_eeg] = mix
            return full

        # Background: one pink source under every electrode, smeared to the neighbours.
        bg_mix = np.exp(-angular_distance(pos, pos) ** 2 / (2 * (0.3 * tr.spread) ** 2))
        bg_mix /= np.linalg.norm(bg_mix, axis=1, keepdims=True)
        # Each session weights the background sources differently (another state, another
        # covariance); within the session they wander slowly (see _chunk).
        self._bg_mix = bg_mix * cfg.background_uv * session["bg_gain"]
        self._gain = session["gain"]
        self._drift = session if cfg.drift > 0 else None
        imp = signal.lfilter(_PINK_B, _PINK_A, np.r_[1.0, np.zeros(int(20 * sfreq))])
        self._pink_gain = 1.0 / np.sqrt(np.sum(imp ** 2))
        self._pink_zi = np.zeros((n_eeg, len(_PINK_A) - 1))
        # Extra channels carry their own small noise floor.
        self._extra_noise = 2.0

        def band(lo: float, hi: float) -> np.ndarray:
            return signal.butter(2, [lo / nyq, min(hi, 0.95 * nyq) / nyq], btype="band",
                                 output="sos")

        # Oscillatory sources: (filter, mixing column(s), amplitude, gain key or None).
        osc = []
        alpha = band(tr.iaf - 1.0, tr.iaf + 1.0)
        osc.append((alpha, kernel(["O1", "O2", "Pz"], 0.35), cfg.alpha_uv, None))
        mu = band(tr.mu_freq - 1.5, tr.mu_freq + 1.5)
        beta = band(tr.beta_freq - 4.0, tr.beta_freq + 4.0)
        snr = cfg.snr
        for name, key in (("C3", "mu_L"), ("C4", "mu_R"), ("Cz", "mu_mid")):
            mix = kernel([name], 0.22, tilt=cfg.source_tilt)
            osc.append((mu, mix, cfg.mu_uv * snr, key))
            osc.append((beta, mix, cfg.beta_uv * snr, key))
        self._osc = []
        for sos, mix, amp, key in osc:
            gain = 1.0 / np.sqrt(np.sum(signal.sosfilt(sos, np.r_[1.0, np.zeros(int(10 * sfreq))])
                                        ** 2))
            zi = np.zeros((sos.shape[0], mix.shape[1], 2))
            self._osc.append([sos, mix * amp * gain, key, zi])
        self._n_osc = sum(mix.shape[1] for _, mix, _, _ in self._osc)
        # Rhythm bursts: a slow log-amplitude process per oscillatory source (AR(1), unit
        # variance), so mu power at rest varies from one window to the next as a person's does.
        self._env_a = float(np.exp(-1.0 / (cfg.burst_s * sfreq)))
        self._env_zi = np.zeros((self._n_osc, 1))
        self._env_primed = False
        self._ssvep_mix = kernel(["Oz"], 0.3)[:, 0] * cfg.ssvep_uv * snr
        # Line noise: per-electrode amplitude (impedances differ), one phase (one mains).
        self._line_amp = np.zeros(n_all)
        self._line_amp[:] = cfg.line_noise_uv * rng.uniform(0.5, 1.5, n_all)
        self._line_phase = rng.uniform(0, 2 * np.pi)
        # Artifact topographies.
        self._blink_mix = kernel(["Fpz"], 0.45, jitter=0.0)[:, 0]
        self._muscle_mix = kernel(["T7", "T8"], 0.3, jitter=0.02)
        self._muscle_sos = band(20.0, 120.0) if nyq > 25 else None
        self._eog_idx = self.info.ch_names.index("EOG") if "EOG" in self.info.ch_names else None
        self._emg_idx = self.info.ch_names.index("EMG") if "EMG" in self.info.ch_names else None

    def _targets(self, kind: str, freq: float | None) -> dict[str, float]:
        # attempts differ: some trials the participant imagines vividly, some barely
        quality = float(np.clip(self._rng_trial.normal(1.0, self.config.trial_variability),
                                0.2, 1.4))
        if self._rng_lapse.random() < self.config.lapse_rate:
            # attention lapsed: the participant barely imagines anything this time
            quality *= float(self._rng_lapse.uniform(0.0, 0.25))
        erd = float(np.clip(self.traits.erd_strength * quality, 0.0, 0.95))
        gains = {"mu_L": 1.0, "mu_R": 1.0, "mu_mid": 1.0}
        if kind == "left_hand":  # contralateral ERD, slight ipsilateral ERS
            gains.update(mu_R=1.0 - erd, mu_L=1.15)
        elif kind == "right_hand":
            gains.update(mu_L=1.0 - erd, mu_R=1.15)
        elif kind == "feet":  # focal ERD at the vertex, surround ERS of the hand areas
            gains.update(mu_mid=1.0 - erd, mu_L=1.25, mu_R=1.25)
        elif kind == "ssvep":
            gains[f"ssvep:{freq:g}"] = 1.0
        return gains

    # ------------------------------------------------------------------ intent
    @property
    def intent(self) -> str:
        """The current intent (``"rest"``, ``"left_hand"``, ..., ``"ssvep:12"``)."""
        return self._intent

    def set_intent(self, intent: str) -> None:
        """Change what the participant does from the next generated sample on (ramped).

        Raises
        ------
        ValueError
            For an unknown intent or an SSVEP frequency whose harmonic exceeds Nyquist.
        """
        kind, freq = parse_intent(intent)
        if freq is not None and 2 * freq >= self.config.sfreq / 2:
            raise ValueError(
                f"SSVEP at {freq:g} Hz needs its harmonic below Nyquist "
                f"({self.config.sfreq / 2:g} Hz); use a frequency below {self.config.sfreq / 4:g} "
                "Hz or a higher sfreq."
            )
        with self._lock:
            self._ramp.retarget(self._targets(kind, freq), self._n)
            self._intent = kind if freq is None else f"ssvep:{freq:g}"

    def trigger_event(self, kind: str) -> None:
        """Make the participant clench the jaw (EMG burst) or blink twice, starting now.

        Parameters
        ----------
        kind : {"jaw_clench", "double_blink", "blink"}
        """
        if kind not in EVENTS:
            raise ValueError(f"Unknown event {kind!r}; use one of {', '.join(EVENTS)}.")
        with self._lock:
            now = self._n
            if kind == "jaw_clench":
                self._add_muscle(now, strength=3.0, dur=0.6, both=True, jaw=True)
            else:
                self._add_blink(now)
                if kind == "double_blink":
                    self._add_blink(now + round(0.35 * self.config.sfreq))
            self.events.append((now / self.config.sfreq, kind))

    # ------------------------------------------------------------------ artifacts
    def _add_blink(self, start: int) -> None:
        sfreq = self.config.sfreq
        dur = self._rng_wave.uniform(0.25, 0.4)
        t = np.arange(max(int(dur * sfreq), 2)) / sfreq
        shape = np.sin(np.pi * t / dur) ** 2 * (t / dur + 0.3)  # faster rise than fall
        shape /= shape.max()
        amp = self.config.blink_uv * self._rng_wave.uniform(0.7, 1.3)
        wave = np.outer(self._blink_mix, shape * amp)
        if self._eog_idx is not None:
            wave[self._eog_idx] = 2.0 * amp * shape
        self._pending.append((start, wave))

    def _add_muscle(self, start: int, strength: float = 1.0, dur: float | None = None,
                    both: bool = False, jaw: bool = False) -> None:
        sfreq = self.config.sfreq
        dur = dur if dur is not None else self._rng_wave.uniform(0.3, 1.2)
        n = max(int(dur * sfreq), 4)
        noise = self._rng_wave.standard_normal((n, 2)).T
        if self._muscle_sos is not None:
            noise = signal.sosfiltfilt(self._muscle_sos, noise, axis=1, padlen=0)
            noise /= noise.std(axis=1, keepdims=True) + 1e-12
        side = np.ones(2) if both else np.eye(2)[self._rng_wave.integers(2)] + 0.3
        env = signal.windows.tukey(n, 0.3)
        wave = (self._muscle_mix * side) @ (noise * env) * self.config.muscle_uv * strength
        if self._emg_idx is not None:
            wave[self._emg_idx] = noise[0] * env * self.config.muscle_uv * (6.0 if jaw else 1.0)
        self._pending.append((start, wave))

    def _add_pop(self, start: int) -> None:
        # an electrode's contact shifts: a step that decays as the charge at the skin settles
        sfreq = self.config.sfreq
        ch = int(self._rng_pop.integers(self._n_eeg))
        tau = self._rng_pop.uniform(0.2, 1.0)
        amp = self.config.pop_uv * self._rng_pop.uniform(0.5, 1.5) * self._rng_pop.choice([-1, 1])
        t = np.arange(max(int(5 * tau * sfreq), 2)) / sfreq
        wave = np.zeros((self.info.n_channels, t.size))
        wave[ch] = amp * np.exp(-t / tau)
        self._pending.append((start, wave))

    # ------------------------------------------------------------------ generation
    def _chunk(self, n: int) -> np.ndarray:
        """Generate the next ``n`` samples with the current intent schedule (no locking)."""
        cfg = self.config
        sfreq = cfg.sfreq
        n0 = self._n
        idx = np.arange(n0, n0 + n)
        t = idx / sfreq
        out = np.zeros((self.info.n_channels, n))
        # 1/f background, spatially mixed
        # (draws are time-major, one call per generator and chunk: chunking cannot change them)
        white = np.ascontiguousarray(self._rng_bg.standard_normal((n, self.info.n_channels)).T)
        pink, self._pink_zi = signal.lfilter(_PINK_B, _PINK_A, white[: self._n_eeg], axis=1,
                                             zi=self._pink_zi)
        pink *= self._pink_gain
        drift = self._drift
        if drift is not None:
            pink *= np.exp(drift["bg_amp"][:, None] * np.sin(
                2 * np.pi * t[None, :] / drift["bg_period"][:, None]
                + drift["bg_phase"][:, None]))
        out[: self._n_eeg] = self._bg_mix @ pink
        out[self._n_eeg:] = self._extra_noise * white[self._n_eeg:]
        # band-limited rhythms with their task gains
        white_osc = np.ascontiguousarray(self._rng_osc.standard_normal((n, self._n_osc)).T)
        env = self._envelopes(n)
        col = 0
        for src in self._osc:
            sos, mix, key, zi = src
            k = mix.shape[1]
            white, col = white_osc[col: col + k], col + k
            band, src[3] = signal.sosfilt(sos, white, axis=1, zi=zi)
            if env is not None:
                band = band * env[col - k: col]
            if key is not None:
                band = band * self._ramp.value(key, idx)
            out += mix @ band
        # SSVEP: phase-locked to the (virtual) stimulus, with a visual-pathway latency
        for key in list(self._ramp.target):
            if key.startswith("ssvep:"):
                f = float(key.split(":")[1])
                g = self._ramp.value(key, idx)
                if np.any(g):
                    ph = 2 * np.pi * f * (t - self.traits.ssvep_latency)
                    wave = g * (np.sin(ph) + 0.5 * np.sin(2 * ph + 0.6))
                    out += np.outer(self._ssvep_mix, wave)
        if cfg.line_noise_uv:
            out += np.outer(self._line_amp, np.sin(2 * np.pi * cfg.line_freq * t
                                                   + self._line_phase))
        # spontaneous artifacts: onsets drawn per sample (time-ordered), waveforms separately
        rates = np.array([cfg.blink_rate, cfg.muscle_rate]) / 60.0 / sfreq
        hits = self._rng_onset.random((n, 2)) < rates
        for i, col in zip(*np.nonzero(hits), strict=True):
            if col == 0:
                self._add_blink(n0 + int(i))
                self.events.append(((n0 + i) / sfreq, "blink"))
            else:
                self._add_muscle(n0 + int(i))
                self.events.append(((n0 + i) / sfreq, "muscle"))
        if cfg.pop_rate:
            pops = np.nonzero(self._rng_pop.random(n) < cfg.pop_rate / 60.0 / sfreq)[0]
            for i in pops:
                self._add_pop(n0 + int(i))
                self.events.append(((n0 + i) / sfreq, "pop"))
        keep = []
        for start, wave in self._pending:
            a, b = max(start, n0), min(start + wave.shape[1], n0 + n)
            if b > a:
                out[:, a - n0: b - n0] += wave[:, a - start: b - start]
            if start + wave.shape[1] > n0 + n:
                keep.append((start, wave))
        self._pending = keep
        if drift is not None:  # electrode gains scale everything an electrode picks up
            g = 1.0 + drift["gain_amp"][:, None] * np.sin(
                2 * np.pi * t[None, :] / drift["gain_period"][:, None]
                + drift["gain_phase"][:, None])
            out[: self._n_eeg] *= self._gain[:, None] * g
        self._n = n0 + n
        return out

    def _envelopes(self, n: int) -> np.ndarray | None:
        """Burst envelopes (n_osc, n) of the rhythms, mean power 1; None when disabled."""
        depth = self.config.burst_depth
        if not depth:
            return None
        a = self._env_a
        white = np.ascontiguousarray(self._rng_env.standard_normal((n, self._n_osc)).T)
        if not self._env_primed:  # start from the stationary distribution, not from zero
            self._env_zi[:, 0] = white[:, 0]
            white[:, 0] = 0.0
            self._env_primed = True
        z, self._env_zi = signal.lfilter([np.sqrt(1 - a * a)], [1.0, -a], white, axis=1,
                                         zi=self._env_zi)
        return np.exp(depth * z - depth ** 2)

    def generate(self, n_samples: int) -> np.ndarray:
        """The next ``n_samples`` samples (n_channels, n) in microvolts (float64), instantly.

        Advances the same state as :meth:`poll`: intents set before the call apply from its
        first sample.
        """
        n_samples = int(n_samples)
        if n_samples < 0:
            raise ValueError(f"n_samples must be >= 0, got {n_samples}.")
        with self._lock, _single_blas_thread(n_samples > 8192):
            parts, left = [], n_samples
            while left > 0:  # bounded temporaries whatever the request
                step = min(left, 8192)
                parts.append(self._chunk(step))
                left -= step
            if not parts:
                return np.zeros((self.info.n_channels, 0))
            return parts[0] if len(parts) == 1 else np.concatenate(parts, axis=1)

    @property
    def n_generated(self) -> int:
        """Samples generated since creation."""
        return self._n

    # ------------------------------------------------------------------ Source interface
    def set_script(self, script: IntentScript | None) -> None:
        """Apply ``script`` while polling; its times count from :meth:`start`."""
        with self._lock:
            self._script_steps = list(script.steps) if script is not None else []
            self._arm_script()

    def _arm_script(self) -> None:
        sfreq = self.config.sfreq
        self._script = [(self._n_start + round(t * sfreq), i) for t, i in self._script_steps]

    def start(self) -> None:
        with self._lock:
            self._t0 = local_clock()
            self._n_start = self._n
            self._arm_script()
            self.state = SourceState.STREAMING

    def poll(self) -> tuple[np.ndarray, np.ndarray]:
        if self.state != SourceState.STREAMING:
            raise AcquisitionError("The simulated participant is not started; call start() first.")
        cfg = self.config
        rate = cfg.sfreq * cfg.speed
        with self._lock:
            due = int((local_clock() - self._t0) * rate) - (self._n - self._n_start)
            cap = int(self.max_catchup_s * cfg.sfreq)
            if due > cap:  # the consumer was away: skip ahead like an amplifier buffer overflow
                logger.warning("simulated participant: consumer %.1f s behind, skipping ahead",
                               (due - cap) / cfg.sfreq)
                self._t0 += (due - cap) / rate
                due = cap
            if due <= 0:
                return (np.zeros((self.info.n_channels, 0), np.float32), np.zeros(0))
            first = self._n - self._n_start
            end = self._n + due
            parts = []
            while self._script and self._script[0][0] < end:
                at, intent = self._script.pop(0)
                if at > self._n:
                    parts.append(self.generate(at - self._n))
                self.set_intent(intent)
            if end > self._n:
                parts.append(self.generate(end - self._n))
            data = parts[0] if len(parts) == 1 else np.concatenate(parts, axis=1)
            ts = self._t0 + np.arange(first, first + due) / rate
            return data.astype(np.float32), ts

    def stop(self) -> None:
        self.state = SourceState.STOPPED


def simulate_run(
    cues: Sequence[tuple[float, float, str]],
    total_s: float,
    config: ParticipantConfig | None = None,
    seed: int = 0,
) -> tuple[np.ndarray, StreamInfo, list[tuple[float, float, str]]]:
    """Generate a whole cued run at once.

    Parameters
    ----------
    cues : sequence of (onset_s, duration_s, intent)
        When the participant performs which intent; outside cues they rest.
    total_s : float
        Length of the run in seconds.
    config : ParticipantConfig or None
        Signal settings (default :class:`ParticipantConfig`).
    seed : int
        Subject and noise seed.

    Returns
    -------
    data : ndarray, shape (n_channels, n_samples)
        Microvolts.
    info : StreamInfo
        Channel names, types and sampling rate.
    events : list of (onset_s, duration_s, label)
        The cues, sorted, with normalised labels.
    """
    part = SimulatedParticipant(config, seed=seed)
    sfreq = part.config.sfreq
    n_total = int(round(total_s * sfreq))
    if n_total <= 0:
        raise ValueError(f"total_s must be positive, got {total_s}.")
    schedule: list[tuple[int, str]] = []
    events = []
    last_end = -1.0
    for onset, dur, intent in sorted((float(o), float(d), str(i)) for o, d, i in cues):
        kind, freq = parse_intent(intent)
        label = kind if freq is None else f"ssvep:{freq:g}"
        if dur <= 0 or onset < 0 or onset + dur > total_s + 1e-9:
            raise ValueError(f"Cue ({onset}, {dur}, {intent!r}) does not fit in a {total_s} s "
                             "run; use onsets >= 0 and durations > 0 that end before total_s.")
        if onset < last_end - 1e-9:
            raise ValueError(f"Cue at {onset} s overlaps the previous one (ends {last_end} s); "
                             "space the cues out.")
        last_end = onset + dur
        schedule += [(round(onset * sfreq), label), (round(last_end * sfreq), "rest")]
        events.append((onset, dur, label))
    parts = []
    for at, intent in schedule:
        if at > part.n_generated:
            parts.append(part.generate(at - part.n_generated))
        part.set_intent(intent)
    if n_total > part.n_generated:
        parts.append(part.generate(n_total - part.n_generated))
    data = np.concatenate(parts, axis=1)[:, :n_total]
    return data, part.info, events


@dataclass
class _StreamStats:
    chunks: int = 0
    samples: int = 0
    errors: list[str] = field(default_factory=list)


class ParticipantStream:
    """Publish a :class:`SimulatedParticipant` as a real LSL EEG stream from a thread.

    Parameters
    ----------
    participant : SimulatedParticipant
        The signal source (it is started by :meth:`start`).
    name : str
        LSL stream name.
    source_id : str or None
        LSL source id (default: derived from the name and a random suffix, unique).
    chunk_s : float
        How often a chunk is pushed (about 20 ms, like a wireless amplifier).
    script : IntentScript or None
        Intents to apply at given times after the start.

    Examples
    --------
    >>> with ParticipantStream(SimulatedParticipant(), name="Sim") as stream:  # doctest: +SKIP
    ...     stream.participant.set_intent("left_hand")
    """

    def __init__(self, participant: SimulatedParticipant, name: str = "YumeSimulatedEEG",
                 source_id: str | None = None, chunk_s: float = 0.02,
                 script: IntentScript | None = None) -> None:
        from bci.lsl_outlet import EEGOutlet, unique_source_id  # lazy: offline needs no LSL

        self.participant = participant
        info = participant.info
        self.info = StreamInfo(name=name, sfreq=info.sfreq, ch_names=info.ch_names,
                               ch_types=info.ch_types, units=info.units,
                               source_id=source_id or unique_source_id(name),
                               stream_type=info.stream_type)
        self._outlet_cls = EEGOutlet
        self.outlet = None
        self.chunk_s = float(chunk_s)
        self.script = script
        self.stats = _StreamStats()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def source_id(self) -> str:
        """The LSL source id (fixed at construction, so inlets can look for it early)."""
        return self.info.source_id

    def start(self) -> ParticipantStream:
        """Create the outlet and start pushing (returns self)."""
        if self._thread is not None:
            return self
        self.outlet = self._outlet_cls(self.info)
        if self.script is not None:
            self.participant.set_script(self.script)
        self.participant.start()
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name=f"lsl-{self.info.name}",
                                        daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(self.chunk_s):
            try:
                data, ts = self.participant.poll()
                if data.shape[1]:
                    self.outlet.push(data, ts)
                    self.stats.chunks += 1
                    self.stats.samples += data.shape[1]
            except Exception as err:  # the thread must not die silently
                logger.exception("simulated stream %s failed", self.info.name)
                self.stats.errors.append(str(err))
                return

    def stop(self) -> None:
        """Stop the thread and withdraw the outlet (safe to call twice)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2.0)
            self._thread = None
        self.participant.stop()
        if self.outlet is not None:
            self.outlet.close()
            self.outlet = None

    def __enter__(self) -> ParticipantStream:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
