"""The recorded EEG around each command of a session: band-power time courses and raw traces.

The session's ``recording/`` folder is read with :func:`bci.recording.read_session` (an mne
Raw). Command times (the LSL time of the last sample of the decoded window) are placed on the
recording's own time axis through its stored timestamps, so gaps in the recording do not
shift them (:func:`bci.session_files.lsl_to_seconds`). Epochs that overlap a gap are dropped
by mne (``reject_by_annotation``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import mne
import numpy as np
from matplotlib.figure import Figure
from scipy.ndimage import uniform_filter1d

from bci.recording import read_session
from bci.session_files import RAW_DIR, RAW_TIMES, SESSION_FILE, lsl_to_seconds, sample_grid
from gui.session_data import Command
from gui.session_plots import colours, new_figure

MOTOR_CHANNELS = ("C3", "Cz", "C4")
# Other sensorimotor sites, used when a cap has none of the three above.
NEAR_MOTOR = ("C1", "C2", "C5", "C6", "CP3", "CP4", "CPz", "FC3", "FC4", "FCz")
BAND = (8.0, 30.0)
TRACE_BAND = (1.0, 40.0)
TMIN, TMAX = -2.0, 1.0
SMOOTH_S = 0.5  # moving average of the band power: a few commands per class are noisy
N_TRACES = 4


@dataclass
class CommandSignals:
    """Epochs of the recording around each command.

    Attributes
    ----------
    channels : list of str
        Channels shown (motor channels where the cap has them, else the first ones).
    motor : bool
        Whether ``channels`` are sensorimotor sites.
    times : ndarray
        Seconds from the command, ``TMIN`` to ``TMAX``.
    bandpower : dict
        Command label -> (n_channels, n_times) mean 8-30 Hz power change (%) against the
        channel's mean band power over the whole recording.
    n_epochs : dict
        Command label -> epochs that entered the mean.
    traces : list of (Command, ndarray)
        A few commands with their (n_channels, n_times) 1-40 Hz traces.
    unit : str
        Unit of the traces.
    n_commands, n_kept : int
        Commands given and epochs that fit inside the recording without a gap.
    """

    channels: list[str]
    motor: bool
    times: np.ndarray
    bandpower: dict[str, np.ndarray] = field(default_factory=dict)
    n_epochs: dict[str, int] = field(default_factory=dict)
    traces: list[tuple[Command, np.ndarray]] = field(default_factory=list)
    unit: str = "µV"
    n_commands: int = 0
    n_kept: int = 0


def recording_seconds(recording: Path, t_lsl, sfreq: float) -> np.ndarray:
    """LSL times as seconds from the first sample of the recording's file."""
    meta = json.loads((recording / SESSION_FILE).read_text(encoding="utf-8"))
    n = int(meta.get("n_samples") or 0)
    path = recording / RAW_DIR / RAW_TIMES
    if n and path.exists():
        ts = np.fromfile(path, dtype="<f8", count=n)
        grid = sample_grid(ts, sfreq, meta.get("stream", {}).get("name", ""))
        return lsl_to_seconds(t_lsl, ts, sfreq, grid.index)
    first = meta.get("first_sample_lsl")
    if first is None:
        raise ValueError(f"{recording} holds no sample timestamps, so commands cannot be "
                         "placed on its time axis.")
    return np.asarray(t_lsl, float) - float(first)


def pick_channels(raw: mne.io.BaseRaw) -> tuple[list[str], bool]:
    """The motor channels present (C3/Cz/C4, else neighbours), else the first three EEG ones."""
    eeg = [raw.ch_names[i] for i in mne.pick_types(raw.info, eeg=True)]
    pool = eeg or list(raw.ch_names)
    lookup = {c.upper(): c for c in pool}
    for wanted in (MOTOR_CHANNELS, NEAR_MOTOR):
        found = [lookup[w.upper()] for w in wanted if w.upper() in lookup]
        if found:
            return found[:3], True
    return pool[:3], False


def command_signals(recording: str | Path, commands: list[Command],
                    verbose=None) -> CommandSignals:
    """Cut the recording around every command and average the band power per command class.

    Parameters
    ----------
    recording : path-like
        A :class:`bci.recording.Recorder` folder.
    commands : list of Command
        Commands of the session (their ``t_signal`` is used).
    verbose : bool, str, int or None
        mne's log level for reading, filtering and epoching (None: errors only).

    Returns
    -------
    CommandSignals
    """
    verbose = "error" if verbose is None else verbose
    recording = Path(recording)
    raw, _ = read_session(recording)
    channels, motor = pick_channels(raw)
    raw = raw.pick(channels).load_data(verbose=verbose)
    channels = list(raw.ch_names)
    sfreq = float(raw.info["sfreq"])
    volts = all(t in ("eeg", "eog", "emg", "ecg", "seeg", "ecog")
                for t in raw.get_channel_types())
    scale, unit = (1e6, "µV") if volts else (1.0, "a.u.")
    times = np.arange(round(TMIN * sfreq), round(TMAX * sfreq) + 1) / sfreq
    out = CommandSignals(channels=channels, motor=motor, times=times, unit=unit,
                         n_commands=len(commands))
    if not commands:
        return out
    labels = sorted({c.label for c in commands})
    event_id = {label: i + 1 for i, label in enumerate(labels)}
    onsets = recording_seconds(recording, [c.t_signal for c in commands], sfreq)
    samples = raw.first_samp + np.round(onsets * sfreq).astype(np.int64)
    order = np.argsort(samples, kind="stable")
    events = np.column_stack([samples[order], np.zeros(len(order), np.int64),
                              [event_id[commands[i].label] for i in order]])
    # Band power: filter the whole recording (mne filters around gaps separately), square,
    # smooth; the epochs are cut SMOOTH_S wider so the moving average has no edge inside.
    band = raw.copy().filter(*BAND, picks="all", verbose=verbose)
    ref = np.nanmean((band.get_data() * scale) ** 2, axis=1)
    pad = SMOOTH_S
    ep = mne.Epochs(band, events, event_id, tmin=TMIN - pad, tmax=TMAX + pad, baseline=None,
                    picks="all", reject_by_annotation=True, preload=True,
                    event_repeated="drop", on_missing="ignore", verbose=verbose)
    out.n_kept = len(ep)
    if len(ep):
        power = (ep.get_data(picks="all") * scale) ** 2
        power = uniform_filter1d(power, max(int(SMOOTH_S * sfreq), 1), axis=2, mode="nearest")
        keep = slice(int(round(pad * sfreq)), int(round(pad * sfreq)) + len(times))
        change = 100.0 * (power[:, :, keep] / ref[None, :, None] - 1.0)
        codes = ep.events[:, 2]
        for label, code in event_id.items():
            mine = codes == code
            if mine.any():
                out.bandpower[label] = change[mine].mean(axis=0)
                out.n_epochs[label] = int(mine.sum())
        # Raw traces of a few commands spread over the run (1-40 Hz: no drift, no mains).
        trace = raw.copy().filter(*TRACE_BAND, picks="all", verbose=verbose)
        tr = mne.Epochs(trace, events, event_id, tmin=TMIN, tmax=TMAX, baseline=None,
                        picks="all", reject_by_annotation=True, preload=True,
                        event_repeated="drop", on_missing="ignore", verbose=verbose)
        if len(tr):
            data = tr.get_data(picks="all") * scale
            kept = [commands[order[i]] for i in tr.selection]
            for k in _pick_traces(kept):
                out.traces.append((kept[k], data[k, :, :len(times)]))
    return out


def _pick_traces(kept: list[Command], n: int = N_TRACES) -> list[int]:
    """Up to two wrong commands (the interesting ones), the rest spread over the run."""
    wrong = [i for i, c in enumerate(kept) if c.correct is False][:2]
    others = [i for i in range(len(kept)) if i not in wrong]
    k = min(n - len(wrong), len(others))
    spread = [others[j] for j in np.unique(np.linspace(0, len(others) - 1, k).astype(int))] \
        if k > 0 else []
    return sorted(wrong + spread)


def fig_bandpower(sig: CommandSignals, rows: list[str]) -> Figure:
    """Per command class, the mean 8-30 Hz power change around the command, per channel."""
    col = colours(rows)
    n = len(sig.channels)
    fig = new_figure(3.4 * n + 1.0, 3.0)
    axes = fig.subplots(1, n, sharey=True, squeeze=False)[0]
    for label, curve in sig.bandpower.items():
        for i, ax in enumerate(axes):
            ax.plot(sig.times, curve[i], color=col.get(label, "k"), lw=1.3,
                    label=f"{label} (n={sig.n_epochs[label]})")
    for ax, ch in zip(axes, sig.channels, strict=True):
        ax.axvline(0, color="k", lw=0.8)
        ax.axhline(0, color="0.6", lw=0.6)
        ax.set_title(f"{ch} {BAND[0]:g}–{BAND[1]:g} Hz", fontsize=9)
        ax.set_xlabel("time from command (s)")
    axes[0].set_ylabel("band power vs session mean (%)")
    axes[-1].legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1.0))
    return fig


def fig_traces(sig: CommandSignals, rows: list[str], t0: float) -> Figure:
    """Stacked 1-40 Hz traces of the shown channels for a few commands."""
    col = colours(rows)
    n = len(sig.traces)
    fig = new_figure(3.0 * n + 0.8, 0.7 * len(sig.channels) + 1.8)
    axes = fig.subplots(1, n, sharey=True, squeeze=False)[0]
    all_data = np.concatenate([d for _, d in sig.traces], axis=1)
    step = 4.0 * float(np.nanmedian(np.nanstd(all_data, axis=1))) or 1.0
    for ax, (cmd, data) in zip(axes, sig.traces, strict=True):
        for i in range(data.shape[0]):
            ax.plot(sig.times, data[i] - i * step, color="k", lw=0.6)
        ax.axvline(0, color=col.get(cmd.label, "r"), lw=1.5)
        verdict = {None: "intent unknown", True: "as intended",
                   False: f"intended: {cmd.intended_label} ({cmd.intended})"}
        ax.set_title(f"{cmd.label} ({cmd.action}) at {cmd.t - t0:.1f} s\n"
                     f"{verdict[cmd.correct]}", fontsize=8,
                     color="k" if cmd.correct is not False else "#d62728")
        ax.set_xlabel("time from command (s)")
    axes[0].set_yticks([-i * step for i in range(len(sig.channels))], sig.channels)
    axes[0].set_ylabel(f"{TRACE_BAND[0]:g}–{TRACE_BAND[1]:g} Hz, {step:.0f} {sig.unit} apart")
    return fig
