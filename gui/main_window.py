"""The main window: generated world on the left, live signals and the active action on the right.

Nothing here blocks the GUI thread: the world runs in a :class:`world.server.WorldServer` thread,
acquisition in an :class:`bci.acquisition.Acquisition` thread; timers only copy what is ready.
A :class:`LoopMonitor` measures how late the event loop runs, shown in the status bar.

With a :class:`gui.runtime.SessionRuntime` (what :func:`gui.app.build_window` gives it) the window
is one more driver of the session loop, like the headless run: its control timer calls
:meth:`~gui.runtime.SessionRuntime.tick`, its world thread steps the runtime's traced world, keys
go through :meth:`~gui.runtime.SessionRuntime.keyboard` and each painted frame is reported with
:meth:`~gui.runtime.SessionRuntime.frame_shown`, so its session folder is the headless one
(decisions, ticks, route, per-stage latency, recording, summary, report).

With an online task in the runtime (``yume run --window --task cued|navigation``) the task's
instruction (``task.describe(now)``: the cue and its seconds left, or the next landmark's
bearing and distance, and the headline figures once it is done) stands above the world; it
changes at the control tick that asks the task, and each new headline is logged as
``task_instruction``.

The photodiode option draws a patch in a corner of the world view that flips black/white with
every new command the world shows and publishes an LSL marker stamped with the paint's time
(BCI2000/BciPy-style display validation: a photodiode on the patch, recorded on an auxiliary
channel, measures what the screen really did after that time).
"""

from __future__ import annotations

import html
import logging
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from pylsl import local_clock
from PyQt6 import QtCore, QtGui, QtWidgets

from bci.acquisition import Acquisition
from bci.eventlog import EventLog
from bci.health import SourceWatch
from bci.quality_watch import QualityWatch
from bci.stream import SourceState
from control.actions import IDLE, Action
from control.keyboard import KeyboardMap
from gui.control_panel import ControlPanel
from gui.keys import KeysWidget
from gui.record_toggle import RecordToggle
from gui.runtime import SessionRuntime
from gui.runtime.pace import FramePace
from gui.steering import Steering
from gui.traces import TracesWidget
from world.server import Frame, WorldServer

logger = logging.getLogger(__name__)

#: Name of the LSL marker stream of the photodiode patch's flips.
PHOTODIODE_STREAM = "yume-photodiode"

# Qt key codes -> the key names used by control.keyboard.
_KEY_NAMES = {
    QtCore.Qt.Key.Key_W: "W", QtCore.Qt.Key.Key_A: "A", QtCore.Qt.Key.Key_S: "S",
    QtCore.Qt.Key.Key_D: "D", QtCore.Qt.Key.Key_Up: "Up", QtCore.Qt.Key.Key_Down: "Down",
    QtCore.Qt.Key.Key_Left: "Left", QtCore.Qt.Key.Key_Right: "Right",
}


def key_name(key: int) -> str | None:
    """Name of a Qt key for :class:`KeyboardMap`, or None for keys that do not steer."""
    try:
        return _KEY_NAMES.get(QtCore.Qt.Key(key))
    except ValueError:
        return None


class LoopMonitor(QtCore.QObject):
    """Measures event-loop lateness: a timer that should fire every ``interval_ms`` records how
    late it actually fires. A blocked GUI thread shows up directly as lag."""

    def __init__(self, interval_ms: int = 10, keep: int = 2000, parent=None) -> None:
        super().__init__(parent)
        self.interval = interval_ms / 1000.0
        self.lags: list[float] = []
        self.keep = keep
        self._last = time.perf_counter()
        self.timer = QtCore.QTimer(self)
        self.timer.setTimerType(QtCore.Qt.TimerType.PreciseTimer)
        self.timer.timeout.connect(self._tick)
        self.timer.start(interval_ms)

    def _tick(self) -> None:
        now = time.perf_counter()
        self.lags.append(max(now - self._last - self.interval, 0.0))
        self.lags = self.lags[-self.keep:]
        self._last = now

    def percentile(self, q: float) -> float:
        """Lag percentile in milliseconds."""
        return float(np.percentile(self.lags, q) * 1000) if self.lags else 0.0


class WorldView(QtWidgets.QLabel):
    """Shows RGB frames scaled to fit, keeping the aspect ratio.

    Frames given with their index are reported to :attr:`on_paint` when they are painted
    (``on_paint(indices, t)``, ``t`` on the LSL clock); when it returns True the photodiode patch
    flips colour in that same paint.

    Parameters
    ----------
    photodiode : bool
        Draw the photodiode patch (:attr:`patch_px` square, top-left corner).
    """

    patch_px = 40

    def __init__(self, parent=None, photodiode: bool = False) -> None:
        super().__init__(parent)
        self.setMinimumSize(256, 256)
        self.setAlignment(QtCore.Qt.AlignmentFlag.AlignCenter)
        self.setStyleSheet("background:#111;")
        self.image: np.ndarray | None = None
        self.photodiode = bool(photodiode)
        self.patch_white = False
        self.on_paint: Callable[[list[int], float], bool] | None = None
        self._pending: list[int] = []  # indices of frames set but not painted yet

    def show_frame(self, image: np.ndarray, index: int | None = None) -> None:
        self.image = np.ascontiguousarray(image)
        h, w, _ = self.image.shape
        qimg = QtGui.QImage(self.image.data, w, h, 3 * w, QtGui.QImage.Format.Format_RGB888)
        pix = QtGui.QPixmap.fromImage(qimg.copy())
        self.setPixmap(pix.scaled(self.size(), QtCore.Qt.AspectRatioMode.KeepAspectRatio,
                                  QtCore.Qt.TransformationMode.FastTransformation))
        if index is not None:
            self._pending.append(int(index))

    def paintEvent(self, event: QtGui.QPaintEvent) -> None:  # noqa: N802 - Qt API
        # Stamped before drawing: the patch's colour for this paint depends on what it shows.
        t = local_clock()
        shown, self._pending = self._pending, []
        if shown and self.on_paint is not None and self.on_paint(shown, t):
            self.patch_white = not self.patch_white
        super().paintEvent(event)
        if self.photodiode:
            painter = QtGui.QPainter(self)
            colours = QtCore.Qt.GlobalColor
            colour = colours.white if self.patch_white else colours.black
            painter.fillRect(0, 0, self.patch_px, self.patch_px, colour)
            painter.end()


class MainWindow(QtWidgets.QMainWindow):
    """The Yume BCI window.

    Parameters
    ----------
    server : WorldServer
        Running world (started by the window).
    acquisition : Acquisition or None
        Running acquisition whose buffer the traces show.
    keymap : KeyboardMap
        Keyboard steering.
    log : EventLog or None
        Session log (actions and frames).
    record_dir : path or None
        Where the record button writes its BIDS session folders (no button when None).
    steering : Steering or None
        Keyboard/decoder arbitration; keyboard only when None. With a decoder, a control panel
        (probability bars, policy state, mapping, start/stop/panic) is shown.
    runtime : SessionRuntime or None
        The session loop (see the module docstring): ``server`` must step ``runtime.world``; the
        runtime's log and steering are the window's. Without one the window steers the server
        directly and writes only ``log``.
    photodiode : bool
        Draw the photodiode patch and publish its flips on the LSL marker stream
        :data:`PHOTODIODE_STREAM` (needs ``runtime``: the flips follow its commands).
    """

    def __init__(self, server: WorldServer, acquisition: Acquisition | None = None,
                 keymap: KeyboardMap | None = None, log: EventLog | None = None,
                 record_dir: str | Path | None = None, steering: Steering | None = None,
                 runtime: SessionRuntime | None = None, photodiode: bool = False) -> None:
        super().__init__()
        self.setWindowTitle("Yume BCI")
        self.server, self.acquisition = server, acquisition
        self.keymap = keymap or KeyboardMap()
        self.runtime = runtime
        if runtime is not None:
            if server.engine is not runtime.world:
                raise ValueError("The world server must step runtime.world (the traced world), "
                                 "not the bare engine; build it with WorldServer(runtime.world).")
            log, steering = runtime.log, runtime.steering
        self.log = log
        self.steering = steering or Steering(acquisition)
        self.pressed: set[str] = set()
        self._key_action: Action = IDLE  # what the keys asked for last
        self.frames_shown = 0
        self._shown_times: list[float] = []
        self.pace = FramePace(self.server.engine.frame_rate)
        self._closed = False
        if photodiode and runtime is None:
            raise ValueError("The photodiode patch flips with the session's commands; give the "
                             "window a runtime (build it with gui.app.build_window).")
        self.photodiode_outlet = None
        if photodiode:
            from bci.lsl_outlet import MarkerOutlet

            self.photodiode_outlet = MarkerOutlet(PHOTODIODE_STREAM)

        self.message = QtWidgets.QLabel()
        self.world_view = WorldView(photodiode=photodiode)
        self.world_view.on_paint = self._painted
        self.keys = KeysWidget(self.keymap)
        # Shown across the top while the source is lost or has ended (see _watch_source).
        self.banner = QtWidgets.QLabel()
        self.banner.setObjectName("sourceBanner")
        self.banner.setWordWrap(True)
        self.banner.hide()
        self.source_watch = SourceWatch(acquisition) if acquisition is not None else None
        self.quality_watch = (
            QualityWatch(acquisition.buffer, acquisition.info,
                         impedance=getattr(acquisition.source, "impedance", None))
            if acquisition is not None else None)
        self._lost_clock = ""  # when the loss was first seen, on the wall clock, for the banner
        # Middle column: traces above, the action and record controls below. Every panel sits
        # in a column of its own rather than a scroll area, so all controls show at 1280x720.
        middle = QtWidgets.QWidget()
        mlay = QtWidgets.QVBoxLayout(middle)
        mlay.setContentsMargins(0, 0, 0, 0)
        if acquisition is not None:
            self.traces: TracesWidget | None = TracesWidget(acquisition.buffer, acquisition.info)
            mlay.addWidget(self.traces, 1)
        else:
            self.traces = None
            mlay.addWidget(QtWidgets.QLabel("No signal source."), 1)
        self.record: RecordToggle | None = None
        if acquisition is not None and record_dir is not None:
            self.record = RecordToggle(acquisition, out_dir=record_dir)
            self.record.failed.connect(self.message.setText)
            self.record.started.connect(lambda d: self._note("recording_started", folder=d))
            self.record.stopped.connect(lambda d: self._note("recording_saved", folder=d))
            mlay.addWidget(self.record)
        box = QtWidgets.QGroupBox("Action")
        blay = QtWidgets.QHBoxLayout(box)
        blay.addWidget(self.keys)
        self.stop_button = QtWidgets.QPushButton("■ Stop (Esc)")
        self.stop_button.setToolTip("Panic stop: the world stays still until released (F2)")
        self.stop_button.setCheckable(True)
        self.stop_button.clicked.connect(
            lambda checked: self.panic("button") if checked else self.release())
        blay.addWidget(self.stop_button)
        mlay.addWidget(box)

        # The online task's instruction, above the world (see _show_task).
        self.task = getattr(runtime, "task", None)
        self.task_label: QtWidgets.QLabel | None = None
        self.task_text = ""
        self._task_headline = ""
        left: QtWidgets.QWidget = self.world_view
        if self.task is not None and hasattr(self.task, "describe"):
            self.task_label = QtWidgets.QLabel()
            self.task_label.setObjectName("taskInstruction")
            self.task_label.setAlignment(QtCore.Qt.AlignmentFlag.AlignCenter)
            self.task_label.setWordWrap(True)
            self.task_label.setTextFormat(QtCore.Qt.TextFormat.RichText)
            self.task_label.setStyleSheet("background:#0d2a4a;color:white;padding:8px;")
            left = QtWidgets.QWidget()
            llay = QtWidgets.QVBoxLayout(left)
            llay.setContentsMargins(0, 0, 0, 0)
            llay.setSpacing(0)
            llay.addWidget(self.task_label)
            llay.addWidget(self.world_view, 1)
        split = QtWidgets.QSplitter()
        split.addWidget(left)
        split.addWidget(middle)
        self.control_panel: ControlPanel | None = None
        if self.steering.online is not None:
            policy = self.steering.online.policy
            self.control_panel = ControlPanel(policy.classes, policy.mapping,
                                              threshold=policy.config.threshold)
            self.control_panel.attach(self.steering.hybrid)  # panic works even if we hang
            self.control_panel.set_running(self.steering.decoder_enabled)
            self.control_panel.start_requested.connect(lambda: self._decoder(True))
            self.control_panel.stop_requested.connect(lambda: self._decoder(False))
            self.control_panel.panic_requested.connect(lambda: self.panic("panel"))
            self.control_panel.release_requested.connect(self.release)
            self.control_panel.mapping_changed.connect(self._mapping_changed)
            split.addWidget(self.control_panel)
            split.setStretchFactor(2, 0)  # the panel keeps its width; world and traces share
        split.setStretchFactor(0, 3)  # the world keeps the larger share, as it always had
        split.setStretchFactor(1, 2)
        central = QtWidgets.QWidget()
        clay = QtWidgets.QVBoxLayout(central)
        clay.setContentsMargins(0, 0, 0, 0)
        clay.setSpacing(0)
        clay.addWidget(self.banner)
        clay.addWidget(split, 1)
        self.setCentralWidget(central)

        self.status = {name: QtWidgets.QLabel() for name in ("source", "rate", "fps", "lag")}
        self.status["fps"].setToolTip(
            "world: frames per second shown in this window. model: frames per second the world "
            "engine generates while it computes (its speed; above the shown rate means it keeps "
            "up, below means the world lags).")
        for label in self.status.values():
            self.statusBar().addPermanentWidget(label)
        self.statusBar().addWidget(self.message, 1)

        self.monitor = LoopMonitor(parent=self)
        self.frame_timer = QtCore.QTimer(self)
        self.frame_timer.setTimerType(QtCore.Qt.TimerType.PreciseTimer)
        self.frame_timer.timeout.connect(self._show_next_frame)
        self.control_timer = QtCore.QTimer(self)
        self.control_timer.timeout.connect(self._control_tick)
        self.status_timer = QtCore.QTimer(self)
        self.status_timer.timeout.connect(self._update_status)
        # X11 sends a held key's auto-repeat as release+press pairs, and Qt flags them as
        # auto-repeat only when the press is already queued; measured under Xvfb, most were not
        # flagged. So on X11 a release waits this long for a press of the same key, which makes
        # it a repeat; elsewhere (offscreen, Wayland) releases apply at once.
        self.release_grace_ms = 40 if QtGui.QGuiApplication.platformName() == "xcb" else 0
        self._releasing: set[str] = set()
        self.release_timer = QtCore.QTimer(self)
        self.release_timer.setSingleShot(True)
        self.release_timer.timeout.connect(self._apply_releases)
        self.setFocusPolicy(QtCore.Qt.FocusPolicy.StrongFocus)
        self.resize(1280, 720)

    # -- life cycle -------------------------------------------------------------------------
    def start(self) -> None:
        """Start the session, the world server and the display timers."""
        # window_started stays the log's first line (before the runtime's run_started).
        self._log("window_started", world=self.server.engine.name,
                  photodiode=self.photodiode_outlet is not None)
        if self.runtime is not None and not self.runtime.started:
            self.runtime.start()
        self.server.start()
        self.frame_timer.start(max(int(1000 / self.server.engine.frame_rate), 1))
        self.status_timer.start(500)
        self.control_timer.start(20)
        if self.traces is not None:
            self.traces.start()

    def closeEvent(self, event: QtGui.QCloseEvent) -> None:  # noqa: N802 - Qt API
        self.shutdown()
        super().closeEvent(event)

    def shutdown(self) -> None:
        """Stop timers and threads, finish the session; safe to call twice."""
        self.frame_timer.stop()
        self.status_timer.stop()
        self.control_timer.stop()
        self.release_timer.stop()
        if self._closed:
            return
        self._closed = True
        if self.traces is not None:
            self.traces.stop()
        if self.record is not None and self.record.is_recording:
            self.record.stop(wait=True)  # the BIDS copy must be complete before we exit
        self.server.stop()  # no world step after this: the runtime can close its tables
        if self.acquisition is not None:
            self.acquisition.stop()
        if self.photodiode_outlet is not None:
            self.photodiode_outlet.close()
            self.photodiode_outlet = None
        closed = dict(frames_shown=self.frames_shown,
                      ui_lag_p99_ms=self.monitor.percentile(99),
                      generation_behind_episodes=self.pace.episodes)
        if self.runtime is None:
            if self.log is not None:
                self.log.log("window_closed", **closed)
            return
        try:
            # latency.*, summary.json (report.html too if the runtime was made to write it;
            # build_window leaves that to run_window); closes the runtime's log.
            self.runtime.finish(**closed, displayed_fps=round(self.displayed_fps(), 1))
        finally:
            # ...and window_closed stays its last line, appended once the runtime is done.
            with EventLog(self.runtime.log.path) as log:
                log.log("window_closed", **closed)

    def _log(self, kind: str, **fields) -> None:
        """Log from the GUI thread (through the runtime, which serialises it with the world
        thread's lines)."""
        if self.runtime is not None:
            self.runtime.note(kind, **fields)
        elif self.log is not None:
            self.log.log(kind, **fields)

    def _note(self, kind: str, **fields) -> None:
        self._log(kind, **fields)
        self.message.setText(f"{kind.replace('_', ' ')}: {next(iter(fields.values()), '')}")

    # -- steering ---------------------------------------------------------------------------
    def set_action(self, action: Action, origin: str = "keyboard") -> None:
        """Set the world's action directly (the arbiter calls this; so can scripts).

        With a runtime the session log records what the world takes (its ``action`` lines come
        from the traced world); without one the change is logged here.
        """
        if action != self.server.action:
            if self.runtime is None and self.log is not None:
                self.log.log("action", action=str(action), index=action.index, origin=origin)
            if self.record is not None and self.record.is_recording:
                # Commands go into the recording's events too, for offline analysis.
                self.record.add_event(local_clock(), 0.0, f"action/{action}/{origin}")
        self.server.set_action(action)
        self.keys.show_action(action)

    def _keys_changed(self) -> None:
        if self._closed:  # keys released by the close's focus-out: the session is over
            return
        action = self.keymap.action(self.pressed)
        if action != self._key_action:  # one command (and one trace) per change of the keys
            self._key_action = action
            if self.runtime is not None:
                # A command (or, playing a simulated participant, an intent) of the session.
                self.runtime.keyboard(action)
            else:
                self.steering.keyboard(action, local_clock())
        self._control_tick()  # apply at once: no timer delay between key and world

    def panic(self, origin: str = "key") -> None:
        """Latch the world still until :meth:`release`; works whatever else is running."""
        if self.runtime is not None and not self._closed:
            self.runtime.panic(origin)  # logged with its tick: a replay stops there too
        else:
            self.steering.hybrid.panic(f"panic stop ({origin})")
        self.stop_button.setChecked(True)
        self._control_tick()

    def release(self) -> None:
        if self.runtime is not None and not self._closed:
            self.runtime.release()
        else:
            self.steering.hybrid.release()
        self.stop_button.setChecked(False)
        self._control_tick()

    def _decoder(self, enabled: bool) -> None:
        if self.runtime is not None and not self._closed:
            self.runtime.set_decoder_enabled(enabled)  # logged with its tick, for replay
        else:
            self.steering.set_decoder_enabled(enabled, local_clock())
            self._log("decoder_control", enabled=enabled)
        self.control_panel.set_running(self.steering.decoder_enabled)

    def _mapping_changed(self, mapping) -> None:
        if self.steering.online is None:
            return
        if self.runtime is not None and not self._closed:
            self.runtime.set_mapping(mapping)  # logged with its tick, for replay
        else:
            self.steering.online.policy.mapping = mapping
            self._log("mapping_changed", mapping=str(mapping))

    def _control_tick(self) -> None:
        if self._closed:  # e.g. the focus-out that follows the close: the session is over
            return
        if self.runtime is not None:
            # Decodes, logs decisions/ticks/commands and traces them (see SessionRuntime.tick).
            result = self.runtime.tick()
            action, origin, reason, outputs = (result.action, result.origin, result.reason,
                                               result.policy)
        else:
            tick = self.steering.tick(local_clock())
            action, origin, reason, outputs = (tick.output.action, tick.output.source,
                                               tick.output.reason, tick.policy)
            for out in outputs:
                if out.command is not None and self.log is not None:
                    self.log.log("decision", t=out.timestamp, command=str(out.command),
                                 action=str(out.action), state=out.state.value)
        if self.control_panel is not None:
            for out in outputs:
                self.control_panel.show_output(out)
        self.set_action(action, origin=origin)
        self._show_task(result.now if self.runtime is not None else None)
        if reason and reason != self.message.text():
            self.message.setText(reason)

    def _show_task(self, now: float | None = None) -> None:
        """Put the task's instruction (``task.describe(now)``) above the world.

        Called at every control tick with the tick's time, right after the runtime asked the
        task what it means then, so the text and the logged intent always agree and a cue
        shows within a tick (20 ms) of its scheduled onset. Each new headline (a cue, a rest,
        the next landmark, the end) is logged as ``task_instruction`` at that time (the text
        is set microseconds later, the paint within one event-loop pass).
        """
        if self.task_label is None or self._closed:
            return
        now = local_clock() if now is None else now
        text = str(self.task.describe(now))
        if text == self.task_text:
            return
        self.task_text = text
        headline, _, detail = text.partition("\n")
        self.task_label.setText(
            f"<div style='font-size:22pt;font-weight:bold'>{html.escape(headline)}</div>"
            f"<div style='font-size:12pt'>{html.escape(detail)}</div>")
        if headline != self._task_headline:
            self._task_headline = headline
            self._log("task_instruction", t=now, task=self.task.name, text=headline,
                      detail=detail)

    def keyPressEvent(self, event: QtGui.QKeyEvent) -> None:  # noqa: N802 - Qt API
        if event.key() == QtCore.Qt.Key.Key_Escape:
            return self.panic("Esc")
        if event.key() == QtCore.Qt.Key.Key_F2:
            return self.release()
        name = key_name(event.key())
        if name is None:
            return super().keyPressEvent(event)
        if event.isAutoRepeat():
            return
        if name in self._releasing:  # the press of an auto-repeat pair: the key is still held
            self._releasing.discard(name)
            return
        if name not in self.pressed:
            self.pressed.add(name)
            self._keys_changed()

    def keyReleaseEvent(self, event: QtGui.QKeyEvent) -> None:  # noqa: N802 - Qt API
        name = key_name(event.key())
        if name is None:
            return super().keyReleaseEvent(event)
        if event.isAutoRepeat() or name not in self.pressed:
            return
        if self.release_grace_ms <= 0:
            self.pressed.discard(name)
            self._keys_changed()
            return
        self._releasing.add(name)
        self.release_timer.start(self.release_grace_ms)

    def _apply_releases(self) -> None:
        """The releases no press followed within the grace time: the keys are up."""
        if self._releasing:
            self.pressed -= self._releasing
            self._releasing.clear()
            self._keys_changed()

    def focusOutEvent(self, event: QtGui.QFocusEvent) -> None:  # noqa: N802 - Qt API
        # Key releases are lost when focus leaves; never keep walking on a stale key.
        self.release_timer.stop()
        self._releasing.clear()
        self.pressed.clear()
        self._keys_changed()
        super().focusOutEvent(event)

    # -- timers -----------------------------------------------------------------------------
    def _show_next_frame(self) -> None:
        frames = self.server.frames(limit=1)  # one frame per tick: the world's own pace
        if self.pace.tick(time.perf_counter(), bool(frames), self.server.moving):
            pace = self.pace.state()
            self._log("generation_behind", shown_fps=round(pace.shown_fps, 1),
                      target_fps=pace.target_fps,
                      model_fps=round(self.server.generation_fps(), 1),
                      starved=round(pace.starved, 2))
        if not frames:
            return
        frame: Frame = frames[0]
        self.world_view.show_frame(frame.image, frame.index)
        self.frames_shown += 1
        now = time.perf_counter()
        self._shown_times = [t for t in self._shown_times if now - t < 2.0] + [now]

    def _painted(self, indices: list[int], t: float) -> bool:
        """Frames ``indices`` were painted at ``t``: close their traces; True flips the
        photodiode patch (they show a new command), which is logged and published."""
        if self.runtime is None or self._closed:
            return False
        closed = [trace for i in indices for trace in self.runtime.frame_shown(i, t)]
        if not closed or self.photodiode_outlet is None:
            return False
        flip = {"patch": "black" if self.world_view.patch_white else "white",
                "frame": indices[-1], "ids": [tr.id for tr in closed],
                "actions": [tr.action for tr in closed], "origins": [tr.origin for tr in closed]}
        # Stamped with the paint's time, the time frame_shown has in latency.tsv.
        self.photodiode_outlet.push_json(flip, t)
        self._log("photodiode", t=t, **flip)
        return True

    def show_image(self, image: np.ndarray) -> None:
        """Show an image directly (the first frame after a reset)."""
        self.world_view.show_frame(image)

    def displayed_fps(self) -> float:
        times = self._shown_times
        return (len(times) - 1) / (times[-1] - times[0]) if len(times) > 1 else 0.0

    def _update_status(self) -> None:
        acq = self.acquisition
        if acq is not None:
            state = acq.state.value
            self.status["source"].setText(f"{acq.info.name} ({state})")
            self.status["rate"].setText(f"{acq.info.sfreq:g} Hz × {acq.info.n_channels} ch")
            if acq.error:
                self.message.setText(acq.error)
            self._watch_source()
        else:
            self.status["source"].setText("no source")
        pace = self.pace.state()
        if pace.behind:
            # Say it where the rate is read: a frozen picture with "16 frames/s" beside it is
            # what users reported.
            fps = (f"world {pace.shown_fps:.1f} of {pace.target_fps:g} fps: generation falls "
                   f"behind (model {self.server.generation_fps():.0f} frames/s)")
        else:
            fps = (f"world {self.displayed_fps():.1f} fps shown, model "
                   f"{self.server.generation_fps():.0f} frames/s")
        self.status["fps"].setStyleSheet("color: #b34700; font-weight: bold;" if pace.behind
                                         else "")
        link = getattr(self.server.engine, "link_state", None)  # a world service's world
        self.status["fps"].setText(fps if link is None else f"{fps}, link {link}")
        self.status["lag"].setText(f"UI lag p99 {self.monitor.percentile(99):.1f} ms")
        if self.server.error:
            self.message.setText(self.server.error)

    def _watch_source(self) -> None:
        """Banner, grey traces and log entries while the source is lost, and when it ends.

        A lost stream keeps its last seconds in the buffer; without this they would stay on
        screen looking live. The outage is timed from when the window first saw it.
        """
        acq = self.acquisition
        now = local_clock()
        was_lost = self.source_watch.lost_since is not None
        for kind, fields in self.source_watch.poll(now):
            self._log(kind, source=acq.info.name, **fields)
        lost = self.source_watch.lost_since is not None
        if not lost:  # judging the frozen last seconds of a lost stream would mislead
            for kind, fields in self.quality_watch.poll(now):
                self._log(kind, source=acq.info.name, **fields)
            if self.traces is not None:
                self.traces.set_quality(self.quality_watch.report,
                                        self.quality_watch.impedance_kohm)
        if lost and not was_lost:
            self._lost_clock = time.strftime("%H:%M:%S")
        text, colour = "", "#b71c1c"  # red: the signal is missing now
        if lost:
            what = ("it failed: " + (acq.error or "no more samples")
                    if acq.state == SourceState.FAILED
                    else f"reconnecting for {now - self.source_watch.lost_since:.0f} s")
            text = f"Signal lost at {self._lost_clock} ({what}). The traces show old data."
        elif self.source_watch.ended:
            text, colour = ("The file ended: playback is over and no new samples will come.",
                            "#455a64")  # grey-blue: expected, not a fault
        style = f"background:{colour};color:white;font-weight:bold;padding:6px;"
        if self.banner.styleSheet() != style:  # restyling re-polishes: only on a change
            self.banner.setStyleSheet(style)
        self.banner.setText(text)
        self.banner.setVisible(bool(text))
        if self.traces is not None:
            self.traces.set_greyed(bool(text))
