"""Whether the world keeps its frame rate: what the status bar says when generation falls behind.

The window shows one frame per tick of a timer at the world's frame rate. While the world is
asked to move, a tick that finds no generated frame is a frame the person did not see: the
picture froze for one frame time. A model that generates below the frame rate starves most
ticks; "16 frames/s" in a status bar is then wrong about what the person looks at.
:class:`FramePace` counts the starved ticks of the last seconds of movement and says when they
pass a fraction, with the rates to print. It holds no Qt, so the headless loop and tests use it
as the window does.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass


@dataclass(frozen=True)
class PaceState:
    """What :meth:`FramePace.state` reports.

    Attributes
    ----------
    behind : bool
        Generation falls behind: over the last ``window_s`` of movement more than
        ``behind_fraction`` of the ticks had no new frame.
    shown_fps : float
        Frames shown per second over the ticks of movement in the window.
    target_fps : float
        The world's frame rate.
    starved : float
        Fraction of the ticks of movement without a frame.
    """

    behind: bool
    shown_fps: float
    target_fps: float
    starved: float


class FramePace:
    """Counts display ticks with and without a new frame while the world moves.

    Parameters
    ----------
    frame_rate : float
        The world's frame rate (the display timer's rate).
    window_s : float
        How many seconds of movement the verdict looks back over.
    behind_fraction : float
        Fraction of starved ticks above which generation falls behind.
    min_ticks : int
        Ticks of movement needed before any verdict (a start from standstill waits for its
        first chunk, which is not falling behind).
    """

    def __init__(self, frame_rate: float, window_s: float = 2.0, behind_fraction: float = 0.2,
                 min_ticks: int | None = None) -> None:
        if frame_rate <= 0:
            raise ValueError(f"frame_rate must be positive, got {frame_rate}.")
        self.frame_rate = float(frame_rate)
        self.behind_fraction = float(behind_fraction)
        self.min_ticks = (int(min_ticks) if min_ticks is not None
                          else max(int(round(frame_rate * window_s / 2)), 1))
        self._ticks: deque[tuple[float, bool]] = deque()
        self.window_s = float(window_s)
        self.episodes = 0  # times generation started falling behind
        self._behind = False

    def tick(self, now: float, got_frame: bool, moving: bool) -> bool:
        """Record one display tick at ``now`` (s); returns True when this tick begins an
        episode of falling behind (log it once), False otherwise.

        Ticks while the world stands still are not counted (a still world generates nothing
        on purpose); a frame that arrives anyway counts as shown.
        """
        if moving or got_frame:
            self._ticks.append((float(now), bool(got_frame)))
        while self._ticks and now - self._ticks[0][0] > self.window_s:
            self._ticks.popleft()
        behind = self.state().behind
        started = behind and not self._behind
        self.episodes += int(started)
        self._behind = behind
        return started

    def state(self) -> PaceState:
        n = len(self._ticks)
        shown = sum(got for _, got in self._ticks)
        starved = (n - shown) / n if n else 0.0
        span = max(n / self.frame_rate, 1e-9)
        return PaceState(behind=n >= self.min_ticks and starved > self.behind_fraction,
                         shown_fps=shown / span if n else 0.0, target_fps=self.frame_rate,
                         starved=starved)

    def reset(self) -> None:
        self._ticks.clear()
        self._behind = False
