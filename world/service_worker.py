"""What makes a world-service session's frames: the engine stepped, its frames encoded, paced.

:class:`GenerationWorker` owns the engine of one session and the threads that drive it: a
generation thread (step the engine under the newest action, encode each frame as a message
of :mod:`world.protocol`) and, for a paced session, a thread that releases the frames at the
world's frame rate. Ready messages go to a ``post`` callback. The same worker runs in a thread
of the service process (:class:`world.service.Session`) or inside the engine's own process
(:mod:`world.engine_process`), whose ``post`` then writes them to the service's pipe.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable

import numpy as np

from control.actions import IDLE, Action
from world.base import WorldEngine
from world.protocol import encode_frame

__all__ = ["GenerationWorker", "Post"]

logger = logging.getLogger(__name__)

# post(frames, wake): hand frames on; wake=False lets them wait for the next call that wakes.
Post = Callable[[list[bytearray], bool], None]


class GenerationWorker:
    """Steps one session's engine and hands its encoded frames to ``post``.

    Parameters
    ----------
    engine : WorldEngine
        The world, already reset (its first frame is the caller's to send).
    post : callable ``(frames, wake)``
        Receives the encoded frames of each chunk (paced: each frame at its due time).
        ``wake=False``: the frames may wait for the next call with ``wake=True`` (an unpaced
        worker batches fast chunks this way); ``post([], True)`` hands over what waits.
    fail : callable ``(message)``
        Told, with one sentence, when the engine raises; the worker then stops.
    fmt : str
        ``"raw"`` or ``"png"``.
    pace : bool
        Release frames at the world's frame rate (True) or as they are generated.
    batch_s : float
        Unpaced: chunks made within this time of the last wake-up are handed over together.
    queue_frames : int
        Frames the receiver may hold; an unpaced batch fills at most half of it.
    label : str
        Names the threads and the log lines.
    receive : callable ``(timeout)``, optional
        Called by the generation thread before it reads the action (timeout 0) and instead
        of its wait while idle (0.1 s), to take new actions from elsewhere (the pipe of an
        engine process) with :meth:`set_action` or end the worker with :meth:`stop_soon`:
        actions then need no thread of their own, whose every wake-up would cost the busy
        generation thread a hand-over of the interpreter lock.
    """

    def __init__(self, engine: WorldEngine, post: Post, fail: Callable[[str], None], *,
                 fmt: str = "raw", pace: bool = True, batch_s: float = 0.0,
                 queue_frames: int = 2, label: str = "",
                 receive: Callable[[float], None] | None = None) -> None:
        self.engine = engine
        self.post = post
        self.fail = fail
        self.fmt = fmt
        self.pace = bool(pace)
        self.batch_s = float(batch_s)
        self.queue_frames = int(queue_frames)
        self.label = label
        self.receive = receive
        self.chunks = 0
        self.engine_cpu = 0.0  # CPU seconds of this worker's thread inside engine.step
        # The newest action: one reference, replaced whole (atomic in CPython, no lock needed).
        self._action = IDLE
        self._wake = threading.Event()
        self._stop = threading.Event()
        # The next chunk, generated while the current one plays (never more than one ahead).
        self._chunks: queue.Queue = queue.Queue(maxsize=1)
        self._taken = threading.Event()
        self._taken.set()
        self._next_due = 0.0  # perf_counter time the next chunk's first frame is due
        self._threads: list[threading.Thread] = []

    @property
    def action(self) -> Action:
        """The action the next chunk is generated with."""
        return self._action

    def set_action(self, action: Action) -> None:
        """Make ``action`` the newest action (it replaces any other not yet used) and wake the
        generation thread if it waits."""
        self._action = action
        self._wake.set()

    def start(self) -> None:
        """Start the generation thread (and, paced, the pacing thread)."""
        # Unpaced, frames go on as they are made: the generator posts them itself, with no
        # hand-off to a second thread per chunk.
        workers = [(self._generate, "gen")] + ([(self._release, "pace")] if self.pace else [])
        for target, name in workers:
            t = threading.Thread(target=target, name=f"world-{self.label}-{name}", daemon=True)
            t.start()
            self._threads.append(t)

    def stop_soon(self) -> None:
        """Ask the threads to end (from any thread, theirs included); :meth:`stop` waits."""
        self._stop.set()
        self._wake.set()

    def wait_stopped(self, timeout: float | None = None) -> bool:
        """Block until :meth:`stop_soon` or :meth:`stop` was called (or a failure)."""
        return self._stop.wait(timeout)

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the threads (blocks until they end, at most ``timeout`` seconds each)."""
        self._stop.set()
        self._wake.set()
        for t in self._threads:
            t.join(timeout=timeout)
        self._threads = []

    def _generate(self) -> None:
        """Step the engine and encode its frames, one chunk ahead of the one being played and
        as late as possible.

        Paced, a chunk is started when the pacer takes the previous one, but not before its
        frames would be due minus the expected time to make it: the action is read at the last
        moment, so a fast engine (the sandbox) answers within about a frame, while a slow one
        (MVDT on a CPU) generates the next chunk while the current one plays. Unpaced, the
        frames are posted as soon as they are encoded.
        """
        estimate = 0.0  # seconds per chunk (step + encoding), decaying from the slowest recent
        index = 0
        held = 0  # unpaced: frames posted since the receiver was last woken
        handed = 0.0  # unpaced: perf_counter time of that wake-up
        while not self._stop.is_set():
            if self.pace:
                if not self._taken.wait(0.1):
                    continue
                start = self._next_due - (1.5 * estimate + 0.004)
                delay = start - time.perf_counter()
                if delay > 0 and self._stop.wait(min(delay, 2.0)):
                    return
            if self.receive is not None:
                self.receive(0.0)
            action = self.action
            if action.is_idle:
                if held:
                    self.post([], True)  # nothing more is coming: hand over what waits
                    held = 0
                if self.receive is not None:
                    self.receive(0.1)
                else:
                    self._wake.wait(0.1)
                    self._wake.clear()
                continue
            if self.pace:
                self._taken.clear()
            t0, c0 = time.perf_counter(), time.thread_time()
            try:
                chunk = self.engine.step(action)
                self.engine_cpu += time.thread_time() - c0
                done = time.time()
                chunk_id = self.chunks + 1
                stamps = np.asarray(chunk.timestamps, dtype=np.float64)
                frames = []
                for i in range(len(chunk)):
                    index += 1
                    frames.append(encode_frame(
                        chunk.frames[i], chunk.poses[i], chunk=chunk_id, index=index, offset=i,
                        action=chunk.action, world_time=float(stamps[i]), generated=done,
                        fmt=self.fmt))
            except Exception as err:  # the service stays up; the client gets the sentence
                logger.exception("world session %s failed", self.label)
                if held:
                    self.post([], True)
                self.fail(f"The world engine failed: {err}")
                self._stop.set()
                return
            now = time.perf_counter()
            dt = now - t0
            estimate = dt if dt > estimate else 0.9 * estimate + 0.1 * dt
            self.chunks = chunk_id
            if self.pace:
                self._chunks.put((stamps, frames))
                continue
            # Unpaced: keep these frames for the next chunk's hand-off if that one is expected
            # within batch_s of the last wake-up and both fit in half the queue; otherwise
            # wake the receiver now (always the first chunk after a pause).
            held += len(frames)
            keep = (held + len(frames) <= self.queue_frames // 2
                    and now + estimate - handed < self.batch_s)
            self.post(frames, not keep)
            if not keep:
                held, handed = 0, now

    def _release(self) -> None:
        """Post the frames of each chunk at the world's frame rate (paced workers only)."""
        ref: tuple[float, float] | None = None  # (perf_counter, world time) of the last frame
        rate = float(self.engine.frame_rate)
        while not self._stop.is_set():
            try:
                stamps, frames = self._chunks.get(timeout=0.1)
            except queue.Empty:
                continue
            now = time.perf_counter()
            base = now if ref is None else ref[0] + (stamps[0] - ref[1])
            if base < now - 1.0 / rate or base > now + 2.0:  # late (paused), or a jump
                base = now
            dues = base + (stamps - stamps[0])
            self._next_due = float(dues[-1]) + 1.0 / rate
            self._taken.set()  # the generator may start on the next chunk
            for due, data in zip(dues, frames, strict=True):
                wait = due - time.perf_counter()
                if wait > 0 and self._stop.wait(wait):
                    return
                self.post([data], True)
            ref = (float(dues[-1]), float(stamps[-1]))
