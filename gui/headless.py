"""A scripted run without a window: the world follows a route while the source is recorded.

Writes, into one folder: the generated frames as an animated GIF, a PNG contact sheet, a PNG of
the signals acquired during the run, the JSON-lines session log and a summary. This is what
``make run`` does on a machine without a display.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import imageio.v3 as iio
import numpy as np
from PIL import Image, ImageDraw, ImageFont
from pylsl import local_clock
from tqdm import tqdm

from bci.acquisition import Acquisition
from control.actions import Action, parse_action
from world.base import WorldEngine

logger = logging.getLogger(__name__)

# About 20 s at 16 frames/s through the streets of the default scene (seed 0) without touching
# a wall: walk, turn while walking, look around, up and down, strafe, back up.
DEFAULT_ROUTE: tuple[tuple[str, float], ...] = (
    ("W", 4.0), ("W ←", 2.5), ("W", 2.5), ("→", 1.5), ("↑", 1.0), ("↓", 1.0), ("W+D", 2.0),
    ("W →", 2.0), ("W", 2.0), ("S", 1.0), ("←", 0.5),
)


def decoder_route(mapping, rest_s: float = 3.0, intent_s: float = 4.0, repeats: int = 2
                  ) -> list[tuple[str, float]]:
    """What a scripted participant intends in a headless decoder run: rest, then each movement
    class's action in turn, ``repeats`` times, ending at rest."""
    moves = [str(mapping.action(c)) for c in mapping.classes if not mapping.is_rest(c)]
    route = [step for _ in range(repeats) for a in moves for step in (("·", rest_s),
                                                                        (a, intent_s))]
    return [*route, ("·", rest_s)]


@dataclass
class HeadlessResult:
    """Where a headless run wrote its outputs, and what it measured."""

    folder: Path
    animation: Path
    contact_sheet: Path
    log: Path
    signals: Path | None
    summary: dict = field(default_factory=dict)
    runtime: object = None  # the gui.runtime.SessionRuntime that ran it


def parse_route(route: Sequence[tuple[str, float]]) -> list[tuple[Action, float]]:
    """Validate a route of (action string, seconds) pairs."""
    out = []
    for text, seconds in route:
        if seconds <= 0:
            raise ValueError(f"Route step {text!r} has a duration of {seconds} s; use > 0.")
        out.append((parse_action(text), float(seconds)))
    return out


def _caption_font(size: int = 13) -> ImageFont.ImageFont:
    """DejaVu Sans (shipped with matplotlib) so arrow keys render; PIL's default lacks them."""
    from matplotlib import font_manager

    try:
        return ImageFont.truetype(font_manager.findfont("DejaVu Sans"), size)
    except OSError:
        return ImageFont.load_default()


def contact_sheet(frames: Sequence[np.ndarray], labels: Sequence[str], columns: int = 6,
                  thumb: int = 160) -> Image.Image:
    """A grid of thumbnails with a caption under each."""
    rows = (len(frames) + columns - 1) // columns
    cap = 18
    sheet = Image.new("RGB", (columns * thumb, rows * (thumb + cap)), (20, 20, 20))
    draw = ImageDraw.Draw(sheet)
    font = _caption_font()
    for i, (frame, label) in enumerate(zip(frames, labels, strict=True)):
        r, c = divmod(i, columns)
        img = Image.fromarray(frame).resize((thumb, thumb), Image.Resampling.BILINEAR)
        sheet.paste(img, (c * thumb, r * (thumb + cap)))
        draw.text((c * thumb + 4, r * (thumb + cap) + thumb + 2), label, fill=(230, 230, 230),
                  font=font)
    return sheet


def plot_signals(data: np.ndarray, times: np.ndarray, ch_names: Sequence[str], units: str,
                 path: Path, max_channels: int = 16) -> Path:
    """Save a stacked-trace plot of the acquired signals."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = min(len(ch_names), max_channels)
    centred = data[:n] - data[:n].mean(axis=1, keepdims=True)
    spread = float(np.percentile(np.abs(centred), 99)) * 2 or 1.0
    fig, ax = plt.subplots(figsize=(10, 0.45 * n + 1.2), dpi=100)
    t = times - times[0]
    for i in range(n):
        ax.plot(t, centred[i] + (n - 1 - i) * spread, lw=0.5)
    ax.set_yticks([(n - 1 - i) * spread for i in range(n)], list(ch_names[:n]))
    ax.set_xlabel("time (s)")
    ax.set_title(f"Signals during the run ({spread:.0f} {units} between channels)")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def run_headless(engine: WorldEngine, out_dir: str | Path,
                 route: Sequence[tuple[str, float]] = DEFAULT_ROUTE,
                 acquisition: Acquisition | None = None, realtime: bool = True,
                 progress: bool = True, steering=None, task=None,
                 max_seconds: float | None = None, seed: int = 0, meta: dict | None = None,
                 report: bool = True, record: bool = True) -> HeadlessResult:
    """Drive ``engine`` along ``route`` (or through ``task``); write the results into ``out_dir``.

    The loop is :class:`gui.runtime.SessionRuntime`'s, the same as the window's: the folder gets
    its decisions, ticks, route, latency and (with a source) the recording; this function adds
    the animation, the contact sheet and the signal plot.

    Parameters
    ----------
    engine : WorldEngine
        A world that has been reset.
    out_dir : path
        Folder for the outputs (created).
    route : sequence of (action string, seconds)
        The scripted route (ignored when ``task`` is given).
    acquisition : Acquisition or None
        A started acquisition to record alongside (its signals are plotted).
    realtime : bool
        Pace the run at the world's frame rate (so signals and frames share one time base);
        False runs as fast as the engine can.
    progress : bool
        Show a progress bar.
    steering : gui.steering.Steering or None
        With a decoder: the route is what the participant intends (a simulated participant
        imagines the class mapped to each step's action; anyone else is free), and the world
        does what the decoder and policy decide. The log then holds the intended action of each
        step beside every decoded command and the action the world took; the summary says how
        often they agreed.
    task : object or None
        An online task (:mod:`gui.tasks`) that says what the participant intends and scores
        the run; the run ends when it is done or after ``max_seconds``.
    max_seconds : float or None
        Time limit of a task run (default: the task's own ``time_limit_s`` or 300 s).
    seed : int
        The scene seed (logged, and the report's map).
    meta : dict or None
        More fields for the session log and summary.
    report, record : bool
        Write the HTML report; record the source into ``recording/``.
    """
    from gui.runtime import SessionRuntime

    steps = parse_route(route) if task is None else []
    folder = Path(out_dir)
    folder.mkdir(parents=True, exist_ok=True)
    runtime = SessionRuntime(engine, folder, acquisition=acquisition, steering=steering,
                             task=task, seed=seed, meta=meta, report=False, record=record)
    if task is not None:
        # A task with a schedule ends itself; the margin lets its last block close first.
        limit = float(max_seconds or (getattr(task, "time_limit_s", None) or 298.0) + 2.0)
        total = int(round(limit * engine.frame_rate))
        steps = [(None, limit)]
    else:
        total = sum(int(round(s * engine.frame_rate)) for _, s in steps)
    frames: list[np.ndarray] = []
    labels: list[str] = []
    t_start = time.perf_counter()
    lsl_start = local_clock()
    bar = tqdm(total=total, desc="headless " + (getattr(task, "name", "") or "route"),
               unit="frame", disable=not progress)
    interrupted = False
    agree = ticks = moving = agree_moving = 0
    runtime.start()
    try:
        for action, seconds in steps:
            n_frames = int(round(seconds * engine.frame_rate))
            if action is not None:
                runtime.set_intent(action, origin="route")
            produced = 0
            while produced < n_frames and not runtime.done:
                tick = runtime.tick()
                taken, meant = tick.action, runtime.intent
                if steering is not None and steering.online is not None:
                    agree += int(taken == meant)
                    if not meant.is_idle:
                        moving += 1
                        agree_moving += int(taken == meant)
                first = runtime.n_frames
                chunk = runtime.world.step(taken)
                runtime.frame_shown(first)  # headless: handed out is shown
                for i in range(len(chunk)):
                    frames.append(chunk.frames[i])
                    labels.append(str(taken))
                ticks += 1
                produced += len(chunk)
                bar.update(len(chunk))
                if realtime:
                    due = t_start + len(frames) / engine.frame_rate
                    time.sleep(max(0.0, due - time.perf_counter()))
    except KeyboardInterrupt:  # Ctrl+C or SIGTERM: the outputs of what ran are still written
        interrupted = True
        runtime.log.log("run_interrupted", frames=len(frames))
    bar.close()
    if not frames:  # stopped before the first frame: nothing to write but the log
        runtime.finish(interrupted=True)
        raise KeyboardInterrupt
    wall = time.perf_counter() - t_start

    animation = folder / "route.gif"
    iio.imwrite(animation, np.stack(frames), duration=1000 / engine.frame_rate, loop=0)
    pick = np.linspace(0, len(frames) - 1, num=min(24, len(frames))).astype(int)
    sheet = folder / "contact_sheet.png"
    contact_sheet([frames[i] for i in pick], [f"{i}: {labels[i]}" for i in pick]).save(sheet)

    signals = None
    extra: dict = {"wall_seconds": round(wall, 3)}
    if steering is not None and steering.online is not None:
        # How often the world did what the participant meant.
        extra["decoder_agreement"] = round(agree / max(ticks, 1), 3)
        # While the participant meant to move (standing still alone scores the rest frames).
        extra["decoder_agreement_moving"] = round(agree_moving / max(moving, 1), 3)
    if acquisition is not None:
        data, ts = acquisition.buffer.latest()
        during = ts >= lsl_start  # only what was acquired while the route ran
        data, ts = data[:, during], ts[during]
        extra.update(channels=acquisition.info.n_channels, samples=int(data.shape[1]),
                     source_state=acquisition.state.value, source_error=acquisition.error)
        if data.shape[1] > 1:
            signals = plot_signals(data, ts, acquisition.info.ch_names, acquisition.info.units,
                                   folder / "signals.png")
    summary = runtime.finish(interrupted=interrupted, **extra)
    if report:
        runtime.write_report()
    return HeadlessResult(folder, animation, sheet, runtime.log.path, signals, summary,
                          runtime=runtime)
