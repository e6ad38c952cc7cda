"""How responsive the window stays while the world renders and signals stream.

Runs the real window offscreen (sandbox world, BrainFlow synthetic board), steers it with key
presses, and measures the event loop's lateness with the window's own LoopMonitor (a 10 ms timer;
lag = how late it fires). For comparison it runs the same load with world rendering done
synchronously in a GUI-thread timer, which is what the world server thread avoids.

    .venv/bin/python benchmarks/bench_gui_responsiveness.py [--seconds 10] [--resolution 256]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import numpy as np  # noqa: E402
from PyQt6 import QtCore, QtTest, QtWidgets  # noqa: E402

from gui.app import RunOptions, build_window  # noqa: E402

KEYS = [QtCore.Qt.Key.Key_W, QtCore.Qt.Key.Key_Right, QtCore.Qt.Key.Key_A, QtCore.Qt.Key.Key_Up]


def measure(app, seconds: float, resolution: int, synchronous: bool) -> dict:
    with tempfile.TemporaryDirectory() as out:
        window = build_window(RunOptions(resolution=(resolution, resolution),
                                         source="synthetic", out=out))
        window.show()
        if synchronous:
            # Same work, but the engine is stepped on the GUI thread.
            engine = window.server.engine
            timer = QtCore.QTimer()
            timer.timeout.connect(
                lambda: window.world_view.show_frame(engine.step(window.server.action).frames[-1]))
            timer.start(int(1000 / engine.frame_rate))
            window.status_timer.start(500)
            window.traces.start()
        else:
            window.start()
        window.monitor.lags.clear()
        t_end = time.perf_counter() + seconds
        i = 0
        while time.perf_counter() < t_end:
            key = KEYS[i % len(KEYS)]
            QtTest.QTest.keyPress(window, key)
            end = time.perf_counter() + 0.5
            while time.perf_counter() < end:
                app.processEvents(QtCore.QEventLoop.ProcessEventsFlag.AllEvents, 5)
                time.sleep(0.001)
            QtTest.QTest.keyRelease(window, key)
            i += 1
        lags = np.array(window.monitor.lags) * 1000
        fps = window.displayed_fps() if not synchronous else float("nan")
        if synchronous:
            timer.stop()
        window.close()
        window.log.close()
    return {"p50": np.percentile(lags, 50), "p99": np.percentile(lags, 99), "max": lags.max(),
            "fps": fps}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--resolution", type=int, default=256)
    args = ap.parse_args()
    app = QtWidgets.QApplication.instance() or QtWidgets.QApplication([])
    threaded = measure(app, args.seconds, args.resolution, synchronous=False)
    sync = measure(app, args.seconds, args.resolution, synchronous=True)
    print(f"GUI event-loop lag, {args.resolution}x{args.resolution} sandbox + synthetic EEG, "
          f"{args.seconds:g} s each")
    print(f"{'world rendering':<28}{'lag p50 ms':>12}{'lag p99 ms':>12}{'max ms':>10}"
          f"{'shown fps':>11}")
    for name, r in (("world server thread", threaded), ("GUI thread (comparison)", sync)):
        print(f"{name:<28}{r['p50']:>12.2f}{r['p99']:>12.2f}{r['max']:>10.1f}{r['fps']:>11.1f}")
    ratio = sync["p99"] / max(threaded["p99"], 1e-3)
    print(f"p99 lag ratio GUI-thread / server-thread: {ratio:.1f}")


if __name__ == "__main__":
    main()
