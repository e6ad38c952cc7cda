"""Assemble a session (source, world, log) and run it in the window or headless."""

from __future__ import annotations

import logging
import os
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from bci.acquisition import Acquisition
from bci.config import SimulatedSpec, make_source, parse_source
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
    adapt: str | None = None  # decoder: online re-centering ("all" or "rest")
    out: Path = Path("runs")
    headless: bool | None = None  # None: decide from the display
    realtime: bool = True
    max_seconds: float | None = None  # window: close after this long (tests, demos)
    checkpoint: Path | None = None  # mvdt: a checkpoint folder instead of the shipped one
    start_image: Path | None = None  # an image file the world starts from
    photodiode: bool = False  # window: the photodiode patch and its LSL markers
    report: bool = True  # window: run_window writes report.html once the window has closed
    task: str = "route"  # "route" (scripted headless), "cued" or "navigation" (online tasks)


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

    engine = make_world(opts.world, height=opts.resolution[0], width=opts.resolution[1],
                        checkpoint=opts.checkpoint)
    try:
        first = engine.reset(seed=opts.seed, image=opts.start_image)
    except Exception:
        engine.close()
        raise
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


def _meta(opts: RunOptions, steering=None) -> dict:
    """What the session log and summary say about how the run was asked for (and, with a
    decoder, the re-centering it runs with: the bundle's own unless ``--adapt`` said)."""
    online = getattr(steering, "online", None)
    adapt = getattr(getattr(online, "decoder", None), "adapt", opts.adapt)
    return {"decoder": str(opts.decoder) if opts.decoder else None,
            "source_option": opts.source, "control_mode": opts.control_mode,
            "adapt": adapt}


def run_headless_session(opts: RunOptions):
    """The headless run of ``yume run``: returns a :class:`gui.headless.HeadlessResult`."""
    from gui.headless import run_headless

    source = open_source(opts.source)  # bad names fail before anything is created
    engine, _ = make_engine(opts)
    folder = session_folder(opts.out)
    acq = start_acquisition(source)
    try:
        steering = task = None
        route = None
        if opts.decoder is not None:
            from control.policy import PolicyConfig
            from gui.headless import decoder_route
            from gui.steering import Steering, decoder_control

            if acq is None:
                raise ValueError("--decoder needs a signal source; leave out --source none.")
            online = decoder_control(opts.decoder, acq, PolicyConfig(mode=opts.control_mode),
                                     adapt=opts.adapt)
            steering = Steering(acq, online)
            route = decoder_route(online.policy.mapping)
        if opts.task in ("cued", "navigation"):
            task = make_task(opts.task, steering, opts.control_mode)
        # A decoder reads live EEG: its runs are paced in real time whatever --fast says.
        realtime = opts.realtime or steering is not None
        kwargs = {"route": route} if route is not None else {}
        return run_headless(engine, folder, acquisition=acq, realtime=realtime,
                            steering=steering, task=task, seed=opts.seed,
                            meta=_meta(opts, steering), **kwargs)
    finally:
        if acq is not None:
            acq.stop()
        engine.close()


def make_task(name: str, steering=None, control_mode: str = "direct"):
    """An online task for ``yume run --task`` with the decoder's mapping (or the default)."""
    from gui.tasks.cued import CuedTask
    from gui.tasks.navigation import NavigationTask

    mapping = steering.online.policy.mapping if steering is not None and steering.online else None
    if name == "cued":
        return CuedTask(mapping, rest_jitter_s=1.0)
    discrete = steering is not None and steering.online is not None and control_mode == "discrete"
    return NavigationTask(mapping=mapping, n_landmarks=1, time_limit_s=180.0,
                          command_s=steering.hybrid.timeouts.get("decoder", 1.0)
                          if discrete else None)


def build_window(opts: RunOptions, task=None):
    """Create (but do not show) the main window with its session runtime, world server and
    acquisition.

    The window drives a :class:`gui.runtime.SessionRuntime` like a headless run does, so its
    session folder (``window.session_folder``) holds the same files; the world server steps the
    runtime's traced world. Closing the window finishes the session (latency, summary, and
    ``task.json``/``task.tsv`` with a task); ``report.html`` takes seconds, so
    :func:`run_window` writes it after the window has gone (``window.runtime.write_report()``
    does it elsewhere).

    With ``opts.task`` ``"cued"`` or ``"navigation"`` (or a ``task`` object, which takes its
    place) the runtime runs that online task and the window shows its instruction above the
    world. With the simulated participant and a decoder the task's intent is what the
    participant imagines, as in a headless run; with anyone else (a person, or no decoder)
    the task only cues and scores, and the person steers. While a task runs the world is
    stepped when idle too, as headless, so the task observes every step and its events are
    logged on time.

    Parameters
    ----------
    opts : RunOptions
        What to run.
    task : object or None
        An online task (:mod:`gui.tasks`) to run instead of the one ``opts.task`` names.

    Returns
    -------
    MainWindow
    """
    from control.policy import PolicyConfig
    from gui.main_window import MainWindow
    from gui.runtime import SessionRuntime
    from gui.steering import Steering, decoder_control
    from gui.tasks import TaskError
    from world.sandbox_scene import SandboxScene
    from world.server import WorldServer

    source = open_source(opts.source)  # bad names fail before anything is created
    engine, first = make_engine(opts)
    acq = None
    try:
        acq = start_acquisition(source)
        steering = None
        if opts.decoder:
            policy = PolicyConfig(mode=opts.control_mode)
            steering = Steering(acq, decoder_control(opts.decoder, acq, policy,
                                                     adapt=opts.adapt))
        if task is None and opts.task in ("cued", "navigation"):
            task = make_task(opts.task, steering, opts.control_mode)
        if getattr(task, "name", None) == "navigation" and not isinstance(
                getattr(engine, "scene", None), SandboxScene):
            raise TaskError("The navigation task needs the sandbox city's map; run it with "
                            "--world sandbox.")
        folder = session_folder(opts.out)
        # The window watches the source itself (banner, impedance) and logs what it sees.
        runtime = SessionRuntime(engine, folder, acquisition=acq, steering=steering,
                                 task=task, task_steers=False, seed=opts.seed, report=False,
                                 watch=False,
                                 meta={**_meta(opts, steering), "mode": "window",
                                       "photodiode": opts.photodiode})
        server = WorldServer(runtime.world, on_still=runtime.world_still, clock=runtime.clock,
                             idle_steps=task is not None)
        window = MainWindow(server, acquisition=acq, record_dir=Path(opts.out) / "recordings",
                            runtime=runtime, photodiode=opts.photodiode)
    except Exception:
        if acq is not None:
            acq.stop()
        engine.close()
        raise
    window.show_image(first.frames[-1])
    window.session_folder = folder
    return window


def startup_error_box(error: BaseException):
    """The critical message box that tells a user without a terminal why the app did not start.

    Parameters
    ----------
    error : BaseException
        The start-up error; its message is the one sentence shown.

    Returns
    -------
    QMessageBox
        Not shown yet: :func:`run_window` runs it, tests read it.
    """
    from PyQt6 import QtWidgets

    box = QtWidgets.QMessageBox(QtWidgets.QMessageBox.Icon.Critical, "Yume BCI could not start",
                                str(error), QtWidgets.QMessageBox.StandardButton.Close)
    box.setInformativeText("Check the --source and --decoder options (`yume run --help`).")
    return box


def close_on_sigterm(window):
    """Let SIGTERM close ``window`` the way its close button does (same log summary).

    Python runs signal handlers only between bytecodes, never while Qt's C++ event loop waits,
    so a timer hands control back to Python a few times a second.

    Returns
    -------
    handler
        The SIGTERM handler this replaced, for ``signal.signal`` to put back.
    """
    from PyQt6 import QtCore

    previous = signal.signal(signal.SIGTERM, lambda *_: window.close())
    timer = QtCore.QTimer(window)
    timer.timeout.connect(lambda: None)
    timer.start(200)
    return previous


def run_window(opts: RunOptions) -> int:
    """Open the window and run the Qt event loop until it is closed.

    A start-up error (a source that cannot be opened, a decoder that does not fit) is shown in
    a message box when there is a display, since a desktop launcher has no terminal, then
    raised as before (``yume`` prints it and exits with code 2). With ``max_seconds`` the box
    closes by itself after that long, like the window. Once the window has closed (its session
    finished), the session report is written unless ``opts.report`` is False.
    """
    from PyQt6 import QtCore, QtWidgets

    app = QtWidgets.QApplication.instance() or QtWidgets.QApplication(sys.argv[:1])
    try:
        window = build_window(opts)
    except (ValueError, RuntimeError, OSError) as err:
        if has_display():
            box = startup_error_box(err)
            if opts.max_seconds:
                QtCore.QTimer.singleShot(int(opts.max_seconds * 1000), box.reject)
            box.exec()
        raise
    window.show()
    window.start()
    window.setFocus()
    previous = close_on_sigterm(window)
    if opts.max_seconds:
        QtCore.QTimer.singleShot(int(opts.max_seconds * 1000), window.close)
    try:
        code = app.exec()
    finally:
        signal.signal(signal.SIGTERM, previous)
    window.shutdown()  # a no-op when the window closed normally
    window.log.close()
    print(f"session log: {window.session_folder / 'session.jsonl'}")
    if window.task is not None:
        print(f"task: {window.task_text.replace(chr(10), ': ')} "
              f"({window.session_folder / 'task.json'})")
    if opts.report:
        report = window.runtime.write_report()
        if report is not None:
            print(f"session report: {report}")
    return int(code)
