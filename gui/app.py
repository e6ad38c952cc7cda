"""Assemble a session (source, world, log) and run it in the window or headless."""

from __future__ import annotations

import logging
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from bci.acquisition import Acquisition
from bci.config import SimulatedSpec, make_source, parse_source
from bci.eventlog import EventLog
from bci.simulated_lsl import PublishedParticipant
from bci.stream import Source

logger = logging.getLogger(__name__)


@dataclass
class RunOptions:
    """What ``yume run`` was asked to do."""

    world: str = "sandbox"
    seed: int = 0
    resolution: tuple[int, int] = (256, 256)
    source: str = "simulated"
    decoder: Path | None = None
    control_mode: str = "direct"
    out: Path = Path("runs")
    headless: bool | None = None  # None: decide from the display
    realtime: bool = True
    max_seconds: float | None = None  # window: close after this long (tests, demos)


def has_display() -> bool:
    """True when a window can be shown (X11/Wayland display, or a Qt platform chosen)."""
    platform = os.environ.get("QT_QPA_PLATFORM", "")
    if platform and platform != "offscreen":
        return True
    if platform == "offscreen":
        return False
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def open_source(text: str) -> Source | None:
    """A source (not started) from its command-line name, or None for ``none``.

    See :func:`bci.config.parse_source` for the accepted forms (``simulated``, ``synthetic``,
    ``brainflow:BOARD[:PORT]``, ``lsl:NAME``, ``file:PATH``, a configuration file).
    """
    if text.strip().lower() in ("", "none"):
        return None
    spec = parse_source(text)
    if isinstance(spec, SimulatedSpec):
        # The app takes the simulated participant through real LSL, like an amplifier.
        return PublishedParticipant(make_source(spec))
    return make_source(spec)


def make_engine(opts: RunOptions):
    from world.registry import make_world

    engine = make_world(opts.world, height=opts.resolution[0], width=opts.resolution[1])
    first = engine.reset(seed=opts.seed)
    return engine, first


def session_folder(out: Path) -> Path:
    """A new, time-stamped folder for one run."""
    folder = Path(out) / time.strftime("%Y%m%d-%H%M%S")
    n = 1
    base = folder
    while folder.exists():
        n += 1
        folder = base.with_name(f"{base.name}-{n}")
    folder.mkdir(parents=True)
    return folder


def start_acquisition(source: Source | None) -> Acquisition | None:
    if source is None:
        return None
    acq = Acquisition(source)
    acq.start()
    return acq


def run_headless_session(opts: RunOptions):
    """The headless run of ``make run``: returns a :class:`gui.headless.HeadlessResult`."""
    from gui.headless import run_headless

    source = open_source(opts.source)  # bad names fail before anything is created
    engine, _ = make_engine(opts)
    folder = session_folder(opts.out)
    acq = start_acquisition(source)
    try:
        return run_headless(engine, folder, acquisition=acq, realtime=opts.realtime)
    finally:
        if acq is not None:
            acq.stop()
        engine.close()


def build_window(opts: RunOptions):
    """Create (but do not show) the main window with its world server and acquisition."""
    from control.policy import PolicyConfig
    from gui.main_window import MainWindow
    from gui.steering import Steering, decoder_control
    from world.server import WorldServer

    source = open_source(opts.source)  # bad names fail before anything is created
    engine, first = make_engine(opts)
    folder = session_folder(opts.out)
    log = EventLog(folder / "session.jsonl")
    acq = start_acquisition(source)
    try:
        steering = None
        if opts.decoder:
            policy = PolicyConfig(mode=opts.control_mode)
            steering = Steering(acq, decoder_control(opts.decoder, acq, policy))
    except Exception:
        if acq is not None:
            acq.stop()
        raise
    window = MainWindow(WorldServer(engine), acquisition=acq, log=log,
                        record_dir=Path(opts.out) / "recordings", steering=steering)
    window.show_image(first.frames[-1])
    window.session_folder = folder
    return window


def run_window(opts: RunOptions) -> int:
    """Open the window and run the Qt event loop until it is closed."""
    from PyQt6 import QtCore, QtWidgets

    app = QtWidgets.QApplication.instance() or QtWidgets.QApplication(sys.argv[:1])
    window = build_window(opts)
    window.show()
    window.start()
    window.setFocus()
    if opts.max_seconds:
        QtCore.QTimer.singleShot(int(opts.max_seconds * 1000), window.close)
    code = app.exec()
    window.log.close()
    print(f"session log: {window.session_folder / 'session.jsonl'}")
    return int(code)
