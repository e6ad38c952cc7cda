"""Scrolling multichannel traces: one offset curve per channel, names on the y axis."""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PyQt6 import QtCore, QtWidgets

from bci.ringbuffer import RingBuffer
from bci.stream import StreamInfo

SCALES_UV = (10, 20, 50, 100, 200, 500, 1000, 5000)
LOST_PEN = pg.mkPen("#b0b0b0", width=1)  # every channel one grey: nothing here is live
# Traffic lights beside the channel names (bci.quality statuses).
LIGHTS = {"good": "#2e7d32", "warn": "#f9a825", "bad": "#c62828"}


class TracesWidget(QtWidgets.QWidget):
    """Live EEG traces read from a :class:`RingBuffer`.

    Each channel is drawn around its own baseline (its mean over the window is removed so a
    DC offset does not push it off screen); the spacing between baselines is the scale chosen in
    the spin box, in the stream's units per channel.

    Parameters
    ----------
    buffer : RingBuffer
        Where samples come from.
    info : StreamInfo
        Channel names, sampling rate and units of the buffer.
    seconds : float
        Width of the time window.
    max_points : int
        Points drawn per curve (the window is decimated to this for speed).

    Attributes
    ----------
    greyed : bool
        True while the curves are drawn grey (see :meth:`set_greyed`).
    """

    def __init__(self, buffer: RingBuffer, info: StreamInfo, seconds: float = 5.0,
                 max_points: int = 800, parent: QtWidgets.QWidget | None = None) -> None:
        super().__init__(parent)
        self.buffer, self.info = buffer, info
        self.seconds, self.max_points = float(seconds), int(max_points)
        self.plot = pg.PlotWidget(background="w")
        self.plot.setMouseEnabled(x=False, y=False)
        self.plot.setLabel("bottom", "time", units="s")
        self.plot.hideButtons()
        self.scale = QtWidgets.QComboBox()
        for s in SCALES_UV:
            self.scale.addItem(f"{s} {info.units}/ch", s)
        self.scale.setCurrentIndex(SCALES_UV.index(100))
        self.scale.currentIndexChanged.connect(self._relabel)
        self.window = QtWidgets.QDoubleSpinBox(minimum=1.0, maximum=60.0, value=self.seconds,
                                               suffix=" s", singleStep=1.0)
        self.window.valueChanged.connect(lambda v: setattr(self, "seconds", float(v)))
        bar = QtWidgets.QHBoxLayout()
        title = QtWidgets.QLabel(f"{info.name} · {info.sfreq:g} Hz")
        title.setToolTip(title.text())
        # A long stream name may be cut short rather than widen the window past the screen.
        title.setSizePolicy(QtWidgets.QSizePolicy.Policy.Ignored,
                            QtWidgets.QSizePolicy.Policy.Preferred)
        bar.addWidget(title, 1)
        bar.addWidget(QtWidgets.QLabel("scale"))
        bar.addWidget(self.scale)
        bar.addWidget(QtWidgets.QLabel("window"))
        bar.addWidget(self.window)
        layout = QtWidgets.QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(bar)
        layout.addWidget(self.plot, 1)
        self.quality_label = QtWidgets.QLabel("signal quality: measuring…")
        self.quality_label.setWordWrap(True)
        layout.addWidget(self.quality_label)
        # One light per channel at the left edge of the traces, in data coordinates.
        self.lights: dict[str, pg.TextItem] = {}
        self.quality = None
        self.pens = [pg.mkPen(pg.intColor(i, hues=max(info.n_channels, 8), maxValue=180),
                              width=1) for i in range(info.n_channels)]
        self.curves = [self.plot.plot(pen=p) for p in self.pens]
        self.greyed = False
        self._relabel()
        self.timer = QtCore.QTimer(self)
        self.timer.timeout.connect(self.refresh)

    @property
    def spacing(self) -> float:
        return float(self.scale.currentData())

    def _relabel(self) -> None:
        n = self.info.n_channels
        ticks = [((n - 1 - i) * self.spacing, name) for i, name in enumerate(self.info.ch_names)]
        self.plot.getAxis("left").setTicks([ticks, []])
        self.plot.setYRange(-self.spacing, n * self.spacing, padding=0)
        self._place_lights()

    def _place_lights(self) -> None:
        for i, name in enumerate(self.info.ch_names):
            if name in self.lights:
                self.lights[name].setPos(-self.seconds, (self.info.n_channels - 1 - i)
                                         * self.spacing)

    def set_quality(self, report, impedance_kohm: dict | None = None) -> None:
        """Show a :class:`bci.quality.QualityReport`: a light per channel, a summary line.

        The line lists what is wrong with which channel (flat, railing, line noise, high
        variance, gaps), so a technician knows which electrode to fix, and the electrode
        impedances where the board reports them.
        """
        if report is None or report is self.quality:
            return
        self.quality = report
        for ch in report.channels:
            light = self.lights.get(ch.name)
            if light is None:
                light = self.lights[ch.name] = pg.TextItem(anchor=(0, 0.5))
                self.plot.addItem(light)
            why = f" {', '.join(ch.reasons)}" if ch.reasons else ""
            light.setHtml(f'<span style="color:{LIGHTS[ch.status]};font-size:11pt">●</span>'
                          f'<span style="color:{LIGHTS[ch.status]}">{why}</span>')
        self._place_lights()
        worst = LIGHTS[report.worst]
        imp = ("; impedance " + ", ".join(f"{k} {v:g} kΩ" for k, v in impedance_kohm.items())
               if impedance_kohm else "")
        self.quality_label.setText(f'<span style="color:{worst}">●</span> signal quality: '
                                   f"{report.summary()}{imp}")

    def set_greyed(self, greyed: bool) -> None:
        """Draw every channel grey while the signal is not live (source lost or ended), so the
        last seconds on screen are not mistaken for the present."""
        if greyed == self.greyed:
            return
        self.greyed = greyed
        for curve, pen in zip(self.curves, self.pens, strict=True):
            curve.setPen(LOST_PEN if greyed else pen)

    def start(self, interval_ms: int = 40) -> None:
        """Redraw every ``interval_ms`` (25 fps by default)."""
        self.timer.start(interval_ms)

    def stop(self) -> None:
        self.timer.stop()

    def refresh(self) -> int:
        """Redraw from the newest samples; returns how many samples were drawn per channel."""
        n_samples = int(self.seconds * (self.info.sfreq or 1.0))
        data, ts = self.buffer.latest(n_samples)
        n = data.shape[1]
        if n < 2:
            return 0
        step = max(1, n // self.max_points)
        data, ts = data[:, ::step], ts[::step]
        t = ts - ts[-1]
        centred = data - data.mean(axis=1, keepdims=True)
        offsets = (self.info.n_channels - 1 - np.arange(self.info.n_channels)) * self.spacing
        for curve, row, off in zip(self.curves, centred, offsets, strict=True):
            curve.setData(t, row + off)
        self.plot.setXRange(-self.seconds, 0, padding=0)
        if self.lights and next(iter(self.lights.values())).pos().x() != -self.seconds:
            self._place_lights()  # the time window changed
        return n
