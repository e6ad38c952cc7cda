"""``yume replay --window``: a recorded session played back at its own pace, with its decisions.

The replay itself is :func:`gui.runtime.replay.replay_session`, the headless one, run in a
thread at real speed (``realtime=True``): its per-tick callback hands the window the world's
newest frame, the tick's time and the commands the replay's decoder issued. The window shows
that frame on the left and, on the right, the recorded class probabilities of
``decisions.tsv`` over the session with the recorded commands (▼ above the curves), the
replay's commands as they come (▲ just above those: the same times when the replay is
identical) and a cursor at the tick being replayed. When the replay ends it says whether the
decisions were identical; the window stays open until it is closed, and closing it earlier
stops the replay (its folder then holds what ran).
"""

from __future__ import annotations

import logging
import sys
import threading
from pathlib import Path

import numpy as np
import pandas as pd
import pyqtgraph as pg
from PyQt6 import QtCore, QtGui, QtWidgets

from gui.main_window import WorldView
from gui.runtime.replay import ReplayError, ReplayResult, replay_session

logger = logging.getLogger(__name__)

#: The x range the plot shows around the cursor in sessions longer than this (seconds).
FOLLOW_S = 30.0
_RECORDED_Y, _REPLAYED_Y = 1.06, 1.14  # where the command markers sit above p = 1


class ReplayCancelled(Exception):
    """The replay window was closed before the replay had ended."""


class ReplayWindow(QtWidgets.QWidget):
    """The re-rendered world beside the session's recorded probabilities and commands.

    Parameters
    ----------
    folder : path
        The session folder to replay (written by ``yume run``).
    decoder : path or None
        Another decoder bundle (default: the session's own).
    out : path or None
        Where the replay writes (default: ``folder/replays/<time>``).
    report : bool
        Write the replay's report at the end.
    realtime : bool
        Play at the session's pace (what the window is for; False only speeds up tests).

    Attributes
    ----------
    result : ReplayResult or None
        Set once the replay has ended (None while it runs, when it failed or was stopped).
    error : str or None
        Why the replay failed.
    frames_shown : int
        Frames the world view has shown.
    """

    def __init__(self, folder: str | Path, decoder: str | Path | None = None,
                 out: str | Path | None = None, report: bool = True, realtime: bool = True,
                 parent: QtWidgets.QWidget | None = None) -> None:
        super().__init__(parent)
        self.folder = Path(folder)
        self.decoder, self.out, self.report, self.realtime = decoder, out, report, realtime
        ticks_path, decisions_path = self.folder / "ticks.tsv", self.folder / "decisions.tsv"
        if not ticks_path.exists() or not decisions_path.exists():
            raise ReplayError(
                f"{self.folder} is not a session folder written by `yume run` (no ticks.tsv and "
                "decisions.tsv); pass the folder a run printed, e.g. runs/20261201-101500.")
        ticks = pd.read_csv(ticks_path, sep="\t", keep_default_na=False)
        self.decisions = pd.read_csv(decisions_path, sep="\t", keep_default_na=False,
                                     dtype={"command": str})
        self.n_ticks = len(ticks)
        self.t0 = float(ticks["now"].iloc[0]) if self.n_ticks else 0.0
        self.duration_s = float(ticks["now"].iloc[-1]) - self.t0 if self.n_ticks else 0.0
        self.classes = [c[2:] for c in self.decisions.columns if c.startswith("p_")]
        self.recorded_commands = np.zeros(0)  # session times of the recorded commands
        self.setWindowTitle(f"Yume BCI replay: {self.folder.name}")

        self.world_view = WorldView()
        self.plot = pg.PlotWidget(background="w")
        self.plot.setMouseEnabled(x=False, y=False)
        self.plot.hideButtons()
        self.plot.setLabel("bottom", "session time", units="s")
        self.plot.setLabel("left", "recorded probability")
        self.plot.setYRange(0.0, 1.2, padding=0)
        self.plot.addLegend(offset=(10, 10))
        self._draw_recorded()
        self.replayed = pg.ScatterPlotItem(symbol="t1", size=10, pen=None,
                                           brush=pg.mkBrush("#1565c0"), name="replay command")
        self.plot.addItem(self.replayed)
        self.cursor = pg.InfiniteLine(0.0, angle=90, pen=pg.mkPen("#d81b60", width=2))
        self.plot.addItem(self.cursor)
        self.status = QtWidgets.QLabel("loading the session, its decoder and the world…")
        self.status.setWordWrap(True)
        self.verdict = QtWidgets.QLabel()
        self.verdict.setWordWrap(True)
        self.verdict.setStyleSheet("font-weight:bold;padding:4px;")

        right = QtWidgets.QWidget()
        rlay = QtWidgets.QVBoxLayout(right)
        rlay.setContentsMargins(0, 0, 0, 0)
        rlay.addWidget(self.plot, 1)
        rlay.addWidget(self.status)
        rlay.addWidget(self.verdict)
        split = QtWidgets.QSplitter()
        split.addWidget(self.world_view)
        split.addWidget(right)
        split.setStretchFactor(0, 2)
        split.setStretchFactor(1, 3)
        layout = QtWidgets.QVBoxLayout(self)
        layout.addWidget(split)
        self.resize(1200, 560)

        self.result: ReplayResult | None = None
        self.error: str | None = None
        self.cancelled = False
        self.frames_shown = 0
        self.cursor_s = 0.0  # session time of the last tick shown
        self._lock = threading.Lock()
        self._latest: tuple | None = None  # (index, now, frame, action) of the newest tick
        self._new_commands: list[tuple[float, str]] = []  # replay commands not drawn yet
        self._commands_x: list[float] = []
        self._stop = threading.Event()
        self._done = threading.Event()
        self._thread: threading.Thread | None = None
        self.timer = QtCore.QTimer(self)
        self.timer.timeout.connect(self._refresh)

    # -- the plot ---------------------------------------------------------------------------
    def _draw_recorded(self) -> None:
        d = self.decisions
        if d.empty:
            return
        x = d["t"].to_numpy(float) - self.t0
        for i, c in enumerate(self.classes):
            pen = pg.mkPen(pg.intColor(i, hues=max(len(self.classes), 4), maxValue=200), width=2)
            self.plot.plot(x, d[f"p_{c}"].to_numpy(float), pen=pen, name=f"p({c})")
        fired = d["command"].astype(str) != ""
        self.recorded_commands = x[fired.to_numpy()]
        self.plot.addItem(pg.ScatterPlotItem(
            self.recorded_commands, np.full(self.recorded_commands.size, _RECORDED_Y),
            symbol="t", size=10, pen=None, brush=pg.mkBrush("#424242"),
            name="recorded command"))
        if self.duration_s > 0:
            self.plot.setXRange(0.0, min(self.duration_s, FOLLOW_S), padding=0.02)

    # -- life cycle -------------------------------------------------------------------------
    def start(self) -> None:
        """Start the replay thread and the display timer."""
        self._thread = threading.Thread(target=self._run, name="replay", daemon=True)
        self._thread.start()
        self.timer.start(15)

    def _run(self) -> None:
        try:
            self.result = replay_session(self.folder, decoder=self.decoder, out=self.out,
                                         realtime=self.realtime, progress=False,
                                         report=self.report, on_tick=self._on_tick)
        except ReplayCancelled:
            self.cancelled = True
        except Exception as err:  # noqa: BLE001 - the window shows why, the CLI returns it
            logger.exception("replay failed")
            self.error = str(err)
        finally:
            self._done.set()

    def _on_tick(self, index: int, now: float, tick, chunk) -> None:
        """Replay thread: keep the newest frame for the display (never touches Qt)."""
        if self._stop.is_set():
            raise ReplayCancelled
        frame = chunk.frames[-1] if len(chunk) else None
        with self._lock:
            self._latest = (index, now, frame, str(tick.action))
            self._new_commands += [(now, str(action)) for action, _ in tick.commands]

    @property
    def finished(self) -> bool:
        """True once the replay has ended (done, failed or stopped) and the window shows it."""
        return self._done.is_set() and not self.timer.isActive()

    def _refresh(self) -> None:
        with self._lock:
            latest, self._latest = self._latest, None
            new, self._new_commands = self._new_commands, []
        if latest is not None:
            index, now, frame, action = latest
            if frame is not None:
                self.world_view.show_frame(frame)
                self.frames_shown += 1
            self.cursor_s = now - self.t0
            self.cursor.setPos(self.cursor_s)
            if self.duration_s > FOLLOW_S:
                lo = min(max(self.cursor_s - 2 * FOLLOW_S / 3, 0.0), self.duration_s - FOLLOW_S)
                self.plot.setXRange(lo, lo + FOLLOW_S, padding=0.02)
            self.status.setText(f"tick {index + 1} of {self.n_ticks} · {self.cursor_s:.1f} of "
                                f"{self.duration_s:.1f} s · world: {action}")
        if new:
            self._commands_x += [now - self.t0 for now, _ in new]
            self.replayed.setData(self._commands_x, [_REPLAYED_Y] * len(self._commands_x))
        if self._done.is_set() and latest is None:
            self.timer.stop()
            self.verdict.setText(self._verdict())

    def _verdict(self) -> str:
        if self.error is not None:
            self.verdict.setStyleSheet("font-weight:bold;padding:4px;color:#b71c1c;")
            return f"The replay failed: {self.error}"
        if self.result is None:
            return "The replay was stopped."
        c = self.result.comparison
        where = f"outputs in {self.result.folder}"
        if not c.get("same_decoder", True):
            return (f"Replay done with {Path(c['decoder']).name}: {c['commands_replay']} "
                    f"commands (the session had {c['commands_original']}); {where}")
        if c["identical"]:
            return (f"Replay done: decisions identical ({c['windows_identical']} of "
                    f"{c['windows_original']} windows); {where}")
        return (f"Replay done: decisions DIFFERENT from decoded window "
                f"{c['first_difference_row']} ({c['windows_identical']} of "
                f"{c['windows_original']} identical); {where}")

    def closeEvent(self, event: QtGui.QCloseEvent) -> None:  # noqa: N802 - Qt API
        self.shutdown()
        super().closeEvent(event)

    def shutdown(self, timeout_s: float = 30.0) -> None:
        """Stop the replay (if it still runs) and wait for its thread to finish the folder."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
        self.timer.stop()


def run_replay_window(folder: str | Path, decoder: str | Path | None = None,
                      out: str | Path | None = None) -> ReplayWindow:
    """Open a :class:`ReplayWindow`, run the Qt event loop until it is closed.

    Returns
    -------
    ReplayWindow
        Closed; its :attr:`~ReplayWindow.result` (or :attr:`~ReplayWindow.error`) says how
        the replay went.
    """
    app = QtWidgets.QApplication.instance() or QtWidgets.QApplication(sys.argv[:1])
    window = ReplayWindow(folder, decoder=decoder, out=out)
    window.show()
    window.start()
    app.exec()
    window.shutdown()
    return window
