"""Flickering SSVEP targets, frame-locked to the display refresh.

Each target's luminance is computed from the *frame counter*, never from the wall clock:
``L(n) = 0.5 * (1 + sin(2 pi f n / R + phase))`` for a sinusoidal target (Manyakov et al. 2013's
sampled sinusoid, which reaches any frequency below R / 2), or its sign for a square target
(exact only when R / f is an even integer). R is the display refresh rate. A dropped frame then
delays the flicker by one frame instead of changing its frequency.

:class:`SSVEPGrid` draws up to 3 x 3 targets with labels (e.g. the two-level action menu of
:class:`control.menu.GridMenu`). With OpenGL and a vsync'd swap (the default on a real display)
the next frame is requested each time the previous one is swapped, so exactly one frame is drawn
per refresh; offscreen or without OpenGL a precise timer at the nominal refresh stands in. The
measured refresh rate (median of the last frame intervals) is shown in the corner and exposed
as :attr:`SSVEPGrid.measured_refresh_hz` so experimenters can check it.
"""

from __future__ import annotations

import logging
import math
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from PyQt6 import QtCore, QtGui, QtWidgets

logger = logging.getLogger(__name__)


class StimulusError(ValueError):
    """A flicker frequency or waveform the display cannot show; the message says what to do."""


def stimulus_luminance(frame: int | np.ndarray, freq: float, refresh_hz: float,
                       phase: float = 0.0, waveform: str = "sine") -> float | np.ndarray:
    """Luminance in [0, 1] of a target at display frame ``frame``.

    Parameters
    ----------
    frame : int or array of int
        Frame counter (0 at the start of the stimulation).
    freq : float
        Flicker frequency (Hz), below ``refresh_hz / 2``.
    refresh_hz : float
        Display refresh rate (Hz).
    phase : float
        Phase offset (radians), for joint frequency-phase coding.
    waveform : {"sine", "square"}
        Sampled sinusoid, or on/off.
    """
    if not 0 < freq < refresh_hz / 2:
        raise StimulusError(
            f"A {freq:g} Hz flicker cannot be shown on a {refresh_hz:g} Hz display (it must be "
            f"below {refresh_hz / 2:g} Hz); choose a lower frequency.")
    s = np.sin(2 * np.pi * freq * np.asarray(frame, dtype=float) / refresh_hz + phase)
    if waveform == "sine":
        out = 0.5 * (1.0 + s)
    elif waveform == "square":
        out = (s >= 0).astype(float)
    else:
        raise StimulusError(f"Unknown waveform {waveform!r}; use 'sine' or 'square'.")
    return float(out) if np.ndim(out) == 0 else out


def square_is_exact(freq: float, refresh_hz: float) -> bool:
    """True when a square flicker at ``freq`` has a whole, even number of frames per cycle."""
    frames = refresh_hz / freq
    return abs(frames - round(frames)) < 1e-6 and round(frames) % 2 == 0


@dataclass(frozen=True)
class Target:
    """One flickering target: frequency (Hz), phase (radians) and label."""

    freq: float
    label: str = ""
    phase: float = 0.0


class _Canvas:
    """Drawing shared by the OpenGL and the plain-widget canvas."""

    def _draw(self, painter: QtGui.QPainter, grid: SSVEPGrid) -> None:
        w, h = self.width(), self.height()
        painter.fillRect(0, 0, w, h, QtGui.QColor(0, 0, 0))
        n = len(grid.targets)
        cols = int(math.ceil(math.sqrt(n)))
        rows = int(math.ceil(n / cols))
        cw, ch = w / cols, h / rows
        size = 0.7 * min(cw, ch)
        font = painter.font()
        font.setPointSizeF(max(size / 6, 8))
        font.setBold(True)
        painter.setFont(font)
        for i, (target, lum) in enumerate(zip(grid.targets, grid.luminances(), strict=True)):
            r, c = divmod(i, cols)
            x = c * cw + (cw - size) / 2
            y = r * ch + (ch - size) / 2
            g = int(round(255 * lum))
            rect = QtCore.QRectF(x, y, size, size)
            painter.fillRect(rect, QtGui.QColor(g, g, g))
            if target.label:
                painter.setPen(QtGui.QColor(220, 40, 40))
                painter.drawText(rect, QtCore.Qt.AlignmentFlag.AlignCenter, target.label)
        painter.setPen(QtGui.QColor(160, 160, 160))
        small = painter.font()
        small.setPointSize(9)
        small.setBold(False)
        painter.setFont(small)
        measured = grid.measured_refresh_hz
        text = (f"refresh {measured:.1f} Hz (nominal {grid.refresh_hz:g})" if measured
                else f"refresh ? (nominal {grid.refresh_hz:g} Hz)")
        painter.drawText(6, h - 6, text)


class _PlainCanvas(QtWidgets.QWidget, _Canvas):
    def __init__(self, grid: SSVEPGrid) -> None:
        super().__init__(grid)
        self.grid = grid

    def paintEvent(self, event) -> None:  # noqa: N802 - Qt naming
        painter = QtGui.QPainter(self)
        self._draw(painter, self.grid)
        painter.end()
        self.grid._frame_drawn()


def _gl_canvas(grid: SSVEPGrid):
    """A vsync'd QOpenGLWidget canvas, or None when OpenGL is not available."""
    try:
        from PyQt6.QtOpenGLWidgets import QOpenGLWidget
    except ImportError:
        return None

    class _GLCanvas(QOpenGLWidget, _Canvas):
        def __init__(self, grid: SSVEPGrid) -> None:
            super().__init__(grid)
            self.grid = grid
            fmt = QtGui.QSurfaceFormat()
            fmt.setSwapInterval(1)  # block on vsync: one swap per refresh
            self.setFormat(fmt)
            # The next frame is requested when this one reached the screen.
            self.frameSwapped.connect(self._next)

        def _next(self) -> None:
            if self.grid.running:
                self.update()

        def paintGL(self) -> None:  # noqa: N802 - Qt naming
            painter = QtGui.QPainter(self)
            self._draw(painter, self.grid)
            painter.end()
            self.grid._frame_drawn()

    return _GLCanvas(grid)


class SSVEPGrid(QtWidgets.QWidget):
    """A grid of flickering targets at configured frequencies.

    Parameters
    ----------
    targets : sequence of Target or float
        Up to nine targets (frequencies in Hz, or :class:`Target` with label and phase).
    refresh_hz : float | None
        Display refresh rate used to sample the flicker; default: the screen's reported rate.
    waveform : {"sine", "square"}
        Flicker waveform.
    use_opengl : bool | None
        Vsync-locked OpenGL canvas; None = when a real display is present.
    parent : QWidget | None
        Qt parent.
    """

    frame_advanced = QtCore.pyqtSignal(int)

    def __init__(self, targets: Sequence[Target | float], refresh_hz: float | None = None,
                 waveform: str = "sine", use_opengl: bool | None = None,
                 parent: QtWidgets.QWidget | None = None) -> None:
        super().__init__(parent)
        self.targets = [t if isinstance(t, Target) else Target(float(t), f"{float(t):g} Hz")
                        for t in targets]
        if not 1 <= len(self.targets) <= 9:
            raise StimulusError(f"An SSVEP grid shows 1 to 9 targets, got {len(self.targets)}.")
        screen = QtGui.QGuiApplication.primaryScreen()
        reported = screen.refreshRate() if screen is not None else 0.0
        self.refresh_hz = float(refresh_hz or reported or 60.0)
        self.waveform = waveform
        for t in self.targets:
            stimulus_luminance(0, t.freq, self.refresh_hz, t.phase, waveform)  # validates
            if waveform == "square" and not square_is_exact(t.freq, self.refresh_hz):
                logger.warning("%g Hz square flicker is not a whole number of frames at %g Hz; "
                               "use the sine waveform for exact frequencies.", t.freq,
                               self.refresh_hz)
        self.frame = 0
        self.running = False
        self._intervals: deque[float] = deque(maxlen=120)
        self._last_draw: float | None = None
        if use_opengl is None:
            use_opengl = QtGui.QGuiApplication.platformName() not in ("offscreen", "minimal")
        canvas = _gl_canvas(self) if use_opengl else None
        self.uses_opengl = canvas is not None
        self.canvas = canvas or _PlainCanvas(self)
        layout = QtWidgets.QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.canvas)
        self._timer = QtCore.QTimer(self)
        self._timer.setTimerType(QtCore.Qt.TimerType.PreciseTimer)
        self._timer.timeout.connect(self.canvas.update)

    # ---------------------------------------------------------------- control
    def start(self) -> None:
        """Start flickering from frame 0."""
        self.frame = 0
        self._intervals.clear()
        self._last_draw = None
        self.running = True
        if not self.uses_opengl:
            self._timer.start(max(int(round(1000.0 / self.refresh_hz)), 1))
        self.canvas.update()

    def stop(self) -> None:
        """Stop flickering (targets stay drawn at mid-grey of the last frame)."""
        self.running = False
        self._timer.stop()

    def set_labels(self, labels: Sequence[str]) -> None:
        """Relabel the targets (e.g. when a menu moves to its next level)."""
        self.targets = [Target(t.freq, str(lab), t.phase)
                        for t, lab in zip(self.targets, labels, strict=False)] + \
            self.targets[len(labels):]
        self.canvas.update()

    # ---------------------------------------------------------------- frames
    def luminances(self) -> list[float]:
        """Luminance of every target at the current frame."""
        return [stimulus_luminance(self.frame, t.freq, self.refresh_hz, t.phase, self.waveform)
                for t in self.targets]

    def _frame_drawn(self) -> None:
        now = time.perf_counter()
        if self._last_draw is not None:
            self._intervals.append(now - self._last_draw)
        self._last_draw = now
        if self.running:
            self.frame += 1
            self.frame_advanced.emit(self.frame)

    @property
    def measured_refresh_hz(self) -> float | None:
        """Median frame rate over the last frames (None until a few frames were drawn)."""
        if len(self._intervals) < 5:
            return None
        return float(1.0 / np.median(self._intervals))
