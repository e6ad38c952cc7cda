"""The calibration cue screen: fixation cross, arrows or SSVEP targets, progress, pause/abort.

:class:`CueScreen` is a self-contained QWidget. :meth:`CueScreen.show_cue` repaints
synchronously (``QWidget.repaint()``) and only then reads the LSL clock, so the stamped onset
follows the moment the cue was drawn (the compositor's frame adds at most one refresh).
:class:`CueRunner` drives a :class:`calibration.session.CalibrationSession` from Qt timers so the
window stays responsive: pause holds the timeline, abort closes the recording cleanly.
"""

from __future__ import annotations

import logging
import math

from pylsl import local_clock
from PyQt6.QtCore import QObject, QPointF, QRectF, Qt, QTimer, pyqtSignal
from PyQt6.QtGui import QColor, QFont, QPainter, QPen, QPolygonF
from PyQt6.QtWidgets import QHBoxLayout, QLabel, QProgressBar, QPushButton, QVBoxLayout, QWidget

from calibration.paradigm import Cue, MIParadigm, Paradigm, SSVEPParadigm
from calibration.session import CalibrationSession, SessionResult

logger = logging.getLogger(__name__)

# Arrow direction (dx, dy) for each motor-imagery class; classes not listed get their text.
ARROWS = {"left_hand": (-1, 0), "right_hand": (1, 0), "feet": (0, 1), "tongue": (0, -1),
          "hands": (0, -1)}
_TEXT = {"left_hand": "left hand", "right_hand": "right hand", "feet": "feet", "rest": "rest",
         "hands": "both hands", "tongue": "tongue"}


class _Canvas(QWidget):
    """The drawing area (black background)."""

    def __init__(self, screen: CueScreen) -> None:
        super().__init__(screen)
        self._screen = screen
        self.setMinimumSize(320, 240)
        self.setAutoFillBackground(False)

    def paintEvent(self, event) -> None:  # noqa: N802 (Qt naming)
        p = QPainter(self)
        p.setRenderHint(QPainter.RenderHint.Antialiasing)
        p.fillRect(self.rect(), QColor("black"))
        self._screen._paint(p, QRectF(self.rect()))
        p.end()


class CueScreen(QWidget):
    """Cue display for motor-imagery and SSVEP calibration.

    Signals
    -------
    pause_toggled(bool)
        The pause button was pressed (True: paused).
    abort_requested()
        The abort button was pressed.
    cue_shown(object, float)
        A cue was drawn; its onset on the LSL clock.

    Parameters
    ----------
    paradigm : MIParadigm or SSVEPParadigm or None
        Used for the SSVEP target layout and the trial count.
    """

    pause_toggled = pyqtSignal(bool)
    abort_requested = pyqtSignal()
    cue_shown = pyqtSignal(object, float)

    def __init__(self, paradigm: Paradigm | None = None, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.paradigm = paradigm or MIParadigm()
        self.kind = "idle"
        self.label = ""
        self.trial = -1
        self.cue: Cue | None = None
        self.cue_visible_s = getattr(self.paradigm.timing, "cue_s", 1.0)
        self._cue_shown_at = 0.0
        self._paused = False
        self.canvas = _Canvas(self)
        self.status = QLabel("ready")
        self.progress = QProgressBar()
        self.progress.setRange(0, self.n_trials)
        self.progress.setFormat("trial %v / %m")
        self.pause_button = QPushButton("Pause")
        self.abort_button = QPushButton("Abort")
        self.pause_button.clicked.connect(self._on_pause)
        self.abort_button.clicked.connect(self.abort_requested.emit)
        bar = QHBoxLayout()
        bar.addWidget(self.status, 1)
        bar.addWidget(self.progress, 2)
        bar.addWidget(self.pause_button)
        bar.addWidget(self.abort_button)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 4)
        layout.addWidget(self.canvas, 1)
        layout.addLayout(bar)
        # SSVEP flicker: repaint at the display rate while targets flicker.
        self._flicker = QTimer(self)
        self._flicker.setInterval(8)
        self._flicker.timeout.connect(self.canvas.update)
        self.setWindowTitle("Yume calibration")

    # ------------------------------------------------------------------ state
    @property
    def n_trials(self) -> int:
        return int(self.paradigm.trials_per_class) * len(self.paradigm.labels)

    @property
    def paused(self) -> bool:
        return self._paused

    def cue_text(self) -> str:
        """What the screen tells the participant now (for tests and the status line)."""
        if self.kind == "fixation":
            return "+"
        if self.kind == "cue":
            return _TEXT.get(self.label, self.label)
        if self.kind == "break":
            return "break"
        if self.kind == "session_end":
            return "done"
        return ""

    def show_cue(self, cue: Cue) -> float:
        """Draw ``cue`` now and return its onset on the LSL clock (read after the repaint)."""
        self.cue = cue
        self.kind = cue.kind
        self.label = cue.label
        if cue.trial >= 0:
            self.trial = cue.trial
            self.progress.setValue(cue.trial + (1 if cue.kind == "iti" else 0))
        self.status.setText(self.cue_text() or cue.kind)
        flicker = isinstance(self.paradigm, SSVEPParadigm) and cue.kind == "cue"
        if flicker and not self._flicker.isActive():
            self._flicker.start()
        elif not flicker:
            self._flicker.stop()
        self._cue_shown_at = local_clock()
        self.canvas.repaint()
        onset = local_clock()
        self.cue_shown.emit(cue, onset)
        return onset

    def _on_pause(self) -> None:
        self._paused = not self._paused
        self.pause_button.setText("Resume" if self._paused else "Pause")
        self.status.setText("paused" if self._paused else self.cue_text())
        self.pause_toggled.emit(self._paused)

    # ------------------------------------------------------------------ drawing
    def _paint(self, p: QPainter, r: QRectF) -> None:
        if isinstance(self.paradigm, SSVEPParadigm):
            self._paint_ssvep(p, r)
        else:
            self._paint_mi(p, r)
        if self._paused:
            self._text(p, r, "paused", 0.08, QColor("yellow"), dy=0.4)

    def _text(self, p: QPainter, r: QRectF, text: str, size: float, color: QColor,
              dy: float = 0.0) -> None:
        f = QFont()
        f.setPixelSize(max(int(min(r.width(), r.height()) * size), 8))
        p.setFont(f)
        p.setPen(color)
        box = QRectF(r.left(), r.top() + dy * r.height(), r.width(), r.height())
        p.drawText(box, Qt.AlignmentFlag.AlignCenter, text)

    def _cross(self, p: QPainter, c: QPointF, s: float) -> None:
        p.setPen(QPen(QColor("white"), max(s / 8, 2)))
        p.drawLine(QPointF(c.x() - s, c.y()), QPointF(c.x() + s, c.y()))
        p.drawLine(QPointF(c.x(), c.y() - s), QPointF(c.x(), c.y() + s))

    def _paint_mi(self, p: QPainter, r: QRectF) -> None:
        c = r.center()
        s = min(r.width(), r.height()) * 0.08
        if self.kind in ("fixation", "cue"):
            self._cross(p, c, s)
        if self.kind == "cue" and (local_clock() - self._cue_shown_at) <= self.cue_visible_s + 1:
            if self.label in ARROWS:
                dx, dy = ARROWS[self.label]
                self._arrow(p, c, dx, dy, min(r.width(), r.height()) * 0.3)
            else:
                self._text(p, r, _TEXT.get(self.label, self.label), 0.1, QColor("white"),
                           dy=0.25)
        elif self.kind in ("break", "session_end"):
            self._text(p, r, self.cue_text(), 0.1, QColor("white"))

    def _arrow(self, p: QPainter, c: QPointF, dx: int, dy: int, length: float) -> None:
        w = length * 0.18
        tip = QPointF(c.x() + dx * length, c.y() + dy * length)
        base = QPointF(c.x() + dx * length * 0.6, c.y() + dy * length * 0.6)
        nx, ny = -dy, dx  # normal
        p.setPen(QPen(QColor("#e33"), w * 0.5))
        p.drawLine(c, base)
        p.setPen(Qt.PenStyle.NoPen)
        p.setBrush(QColor("#e33"))
        p.drawPolygon(QPolygonF([tip, QPointF(base.x() + nx * w, base.y() + ny * w),
                                 QPointF(base.x() - nx * w, base.y() - ny * w)]))

    def target_rects(self, r: QRectF) -> list[QRectF]:
        """Where each SSVEP target is drawn (a ring around the centre)."""
        n = len(self.paradigm.labels)
        rad = min(r.width(), r.height()) * 0.33
        size = min(r.width(), r.height()) * 0.18
        out = []
        for i in range(n):
            a = -math.pi / 2 + 2 * math.pi * i / n
            cx, cy = r.center().x() + rad * math.cos(a), r.center().y() + rad * math.sin(a)
            out.append(QRectF(cx - size / 2, cy - size / 2, size, size))
        return out

    def _paint_ssvep(self, p: QPainter, r: QRectF) -> None:
        targets = self.paradigm.targets
        now = local_clock()
        flicker = self.kind == "cue"
        for t, box in zip(targets, self.target_rects(r), strict=True):
            if flicker:  # sampled sinusoidal stimulation: luminance follows sin at paint time
                lum = 0.5 * (1 + math.sin(2 * math.pi * t.freq * (now - self._cue_shown_at)
                                          + t.phase))
            else:
                lum = 0.35
            g = int(255 * lum)
            p.setPen(Qt.PenStyle.NoPen)
            p.setBrush(QColor(g, g, g))
            p.drawRect(box)
            cued = self.kind in ("fixation", "cue") and self.cue is not None and \
                self.label == t.label
            if cued and (not flicker or now - self._cue_shown_at <= self.cue_visible_s):
                p.setPen(QPen(QColor("#e33"), max(box.width() * 0.06, 3)))
                p.setBrush(Qt.BrushStyle.NoBrush)
                p.drawRect(box.adjusted(-6, -6, 6, 6))
            p.setPen(QColor("#4af"))
            f = QFont()
            f.setPixelSize(max(int(box.height() * 0.3), 8))
            p.setFont(f)
            p.drawText(box, Qt.AlignmentFlag.AlignCenter, t.text or f"{t.freq:g}")
        if self.kind == "fixation":
            self._cross(p, r.center(), min(r.width(), r.height()) * 0.04)
        elif self.kind in ("break", "session_end"):
            self._text(p, r, self.cue_text(), 0.08, QColor("white"))


class CueRunner(QObject):
    """Run a :class:`CalibrationSession` on a :class:`CueScreen` from Qt timers.

    Signals
    -------
    finished(object)
        The :class:`calibration.session.SessionResult` (also when aborted).
    """

    finished = pyqtSignal(object)

    def __init__(self, session: CalibrationSession, screen: CueScreen,
                 pump_ms: int = 20) -> None:
        super().__init__(screen)
        self.session = session
        self.screen = screen
        self.result: SessionResult | None = None
        self._index = 0
        self._t0 = 0.0
        self._paused_at: float | None = None
        self._next = QTimer(self)
        self._next.setSingleShot(True)
        self._next.setTimerType(Qt.TimerType.PreciseTimer)
        self._next.timeout.connect(self._show_next)
        self._pump = QTimer(self)
        self._pump.setInterval(pump_ms)
        self._pump.timeout.connect(self._on_pump)
        screen.pause_toggled.connect(self._on_pause)
        screen.abort_requested.connect(self.abort)

    def start(self) -> None:
        """Start the source and the recording, then the timeline."""
        self.session.start()
        self._t0 = local_clock()
        self._pump.start()
        self._schedule()

    def _due(self, cue: Cue) -> float:
        return self._t0 + cue.onset_s / self.session.speed

    def _schedule(self) -> None:
        if self._index >= len(self.session.cues):
            self._finish(aborted=False)
            return
        wait = self._due(self.session.cues[self._index]) - local_clock()
        self._next.start(max(int(wait * 1000), 0))

    def _show_next(self) -> None:
        if self._paused_at is not None or self.result is not None:
            return
        cue = self.session.cues[self._index]
        # A precise timer may fire a little early: wait out the remainder.
        while local_clock() < self._due(cue) - 0.0005:
            pass
        self.session.prepare(cue)
        onset = self.screen.show_cue(cue)
        self.session.mark(cue, onset, planned=self._due(cue))
        self._index += 1
        self._schedule()

    def _on_pump(self) -> None:
        try:
            self.session.pump()
        except Exception as err:  # keep the window up; close the recording cleanly
            logger.error("acquisition failed during calibration: %s", err)
            self.screen.status.setText(f"acquisition failed: {err}")
            self._finish(aborted=True)

    def _on_pause(self, paused: bool) -> None:
        if paused and self._paused_at is None:
            self._paused_at = local_clock()
            self._next.stop()
            self.session.note("pause")
            set_intent = getattr(self.session.source, "set_intent", None)
            if set_intent is not None:
                set_intent("rest")
        elif not paused and self._paused_at is not None:
            self._t0 += local_clock() - self._paused_at
            self._paused_at = None
            self.session.note("resume")
            self._schedule()

    def abort(self) -> None:
        """Stop now; the recording so far is kept."""
        if self.result is None:
            self.session.note("abort")
            self._finish(aborted=True)

    def _finish(self, aborted: bool) -> None:
        if self.result is not None:
            return
        self._next.stop()
        self._pump.stop()
        self.result = self.session.stop(aborted=aborted)
        self.screen.status.setText("aborted" if aborted else "done")
        self.finished.emit(self.result)
