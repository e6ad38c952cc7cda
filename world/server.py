"""The world server: runs a world engine in its own thread and serves frames at the world's pace.

Whatever the engine costs per chunk (a sandbox frame in a millisecond, an MVDT chunk in a
fraction of a second), the caller never blocks: it sets the current action and takes the frames
that are ready. The server generates the next chunk while the previous one is being shown.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from control.actions import IDLE, Action
from world.base import Chunk, WorldEngine

logger = logging.getLogger(__name__)


@dataclass
class Frame:
    """One frame ready for display."""

    image: np.ndarray
    pose: np.ndarray
    action: Action
    world_time: float
    index: int  # counted from 0 over every frame the server generated, in order
    generated_at: float = 0.0  # the server's clock when its chunk came back from the engine


class WorldServer:
    """Step ``engine`` continuously with the latest action, keeping a few frames ready.

    Parameters
    ----------
    engine : WorldEngine
        The world to run (already reset).
    max_ready : int or None
        How many frames may wait for display; the server pauses when they are not taken. The
        default (one chunk) keeps the next chunk ready while the current one plays, and no more:
        every frame in the queue is a frame of delay between a new action and the picture.
    idle_steps : bool
        If False, the engine is not stepped while the action is idle (the picture stays still and
        no compute is spent); if True, idle is stepped like any other action.
    on_still : callable or None
        Called from the server thread with the idle action when the world stops being stepped
        after a step (``idle_steps=False``), in order with the steps, so a log of what the world
        did also shows it standing still.
    clock : callable
        Stamps :attr:`Frame.generated_at` (the window passes the LSL clock).
    """

    def __init__(self, engine: WorldEngine, max_ready: int | None = None,
                 idle_steps: bool = False, on_still: Callable[[Action], None] | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.engine = engine
        self.idle_steps = idle_steps
        self.on_still = on_still
        self.clock = clock
        self._stepped = False  # the last thing the thread did was a step (not standing still)
        max_ready = max(int(engine.frames_per_step), 1) if max_ready is None else max_ready
        self._ready: queue.Queue[Frame] = queue.Queue(maxsize=max_ready)
        self._action = IDLE
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._index = 0
        self.error: str | None = None
        self.chunk_seconds: list[float] = []  # wall time of recent chunks, for fps readouts

    @property
    def action(self) -> Action:
        with self._lock:
            return self._action

    def set_action(self, action: Action) -> None:
        """Change the action used for the next chunk."""
        with self._lock:
            self._action = action
        self._wake.set()

    def start(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="world-server", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=5.0)
            self._thread = None

    def frames(self, limit: int | None = None) -> list[Frame]:
        """Take the frames that are ready (oldest first), without waiting."""
        out: list[Frame] = []
        while limit is None or len(out) < limit:
            try:
                out.append(self._ready.get_nowait())
            except queue.Empty:
                break
        return out

    def _moves(self, action: Action) -> bool:
        return not (action.is_idle and not self.idle_steps)

    @property
    def moving(self) -> bool:
        """The world is being stepped (not asked to stand still)."""
        return self._moves(self.action)

    def generation_fps(self) -> float:
        """Frames generated per second of compute over the recent chunks."""
        if not self.chunk_seconds:
            return 0.0
        frames = self.engine.frames_per_step * len(self.chunk_seconds)
        return frames / max(sum(self.chunk_seconds), 1e-9)

    def _note_still(self, action: Action) -> None:
        """Tell ``on_still`` once that the world stopped being stepped."""
        if self._stepped and self.on_still is not None:
            try:
                self.on_still(action)
            except Exception:  # noqa: BLE001 - a failing observer must not stop the world
                logger.exception("on_still failed")
        self._stepped = False

    def _run(self) -> None:
        self._loop()
        action = self.action
        if not self._moves(action):  # stopped while asked to stand still
            self._note_still(action)

    def _loop(self) -> None:
        while not self._stop.is_set():
            action = self.action
            if not self._moves(action):
                self._note_still(action)
                self._wake.wait(0.05)
                self._wake.clear()
                continue
            t0 = time.perf_counter()
            try:
                chunk: Chunk = self.engine.step(action)
            except Exception as err:  # the app must stay up; the window shows the message
                self.error = f"The world engine failed: {err}"
                logger.exception("world engine failed")
                self._stop.set()
                return
            self._stepped = True
            generated = self.clock()
            self.chunk_seconds = (self.chunk_seconds + [time.perf_counter() - t0])[-20:]
            for i in range(len(chunk)):
                frame = Frame(chunk.frames[i], chunk.poses[i], action,
                              float(chunk.timestamps[i]), self._index, generated)
                self._index += 1
                while not self._stop.is_set():
                    try:
                        self._ready.put(frame, timeout=0.1)
                        break
                    except queue.Full:
                        continue
