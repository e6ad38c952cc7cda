"""A world that runs in a world service (``yume world serve``), used like a local engine.

``make_world("remote://HOST:PORT", engine="mvdt")`` (or ``yume run --world
remote://HOST:PORT``) gives a :class:`~world.base.WorldEngine` whose frames come from the
service over a WebSocket: the window, headless runs and tasks keep their code while the model
runs on a GPU server. The service paces the frames at the world's rate and keeps generating with
the newest action, so :meth:`RemoteWorld.step` sends the action when it changes and returns the
next chunk's frames as they arrive; standing still is a pause on the service, answered here
with the last frame (paced the same way). The token comes from ``token`` or the environment
variable ``YUME_WORLD_TOKEN``.
"""

from __future__ import annotations

import os
import time

import numpy as np

from control.actions import IDLE, Action
from world.base import Chunk, WorldEngine, WorldError, check_resolution
from world.service import ServiceError
from world.service_client import WorldClient, service_url

SCHEME = "remote://"


class RemoteWorld(WorldEngine):
    """A world engine behind a world service.

    Parameters
    ----------
    address : str
        ``remote://HOST:PORT`` (or ``ws://HOST:PORT/ws``).
    engine : str
        The engine the service runs (``"sandbox"`` or ``"mvdt"``).
    height, width : int
        Frame size.
    token : str or None
        The service's token (default: ``$YUME_WORLD_TOKEN``); required off localhost.
    timeout : float
        Seconds to wait for the connection and for each frame.

    Attributes
    ----------
    dropped : int
        Frames the service dropped for this client (it was too slow to read them).
    latency_s : float or None
        Time from the service sending the latest frame to this client reading it.
    """

    def __init__(self, address: str, engine: str = "sandbox", height: int = 256,
                 width: int = 256, token: str | None = None, timeout: float = 10.0) -> None:
        try:
            self.url = service_url(address)
        except ServiceError as err:
            raise WorldError(str(err)) from None
        self.engine = str(engine)
        self.height, self.width = check_resolution(height, width)
        self.name = f"{self.engine} at {address}"
        self.token = token if token is not None else os.environ.get("YUME_WORLD_TOKEN")
        self.timeout = float(timeout)
        self.client: WorldClient | None = None
        self.dropped = 0
        self.latency_s: float | None = None
        self._action: Action = IDLE
        self._last: Chunk | None = None

    def _connect(self) -> WorldClient:
        try:
            return WorldClient(self.url, token=self.token, timeout=self.timeout)
        except ServiceError as err:
            raise WorldError(str(err)) from None

    def reset(self, seed: int | None = None, image: np.ndarray | None = None) -> Chunk:
        """Open a new session on the service (a running one is closed first)."""
        self.close()
        self.client = self._connect()
        try:
            info = self.client.open(self.engine, seed=seed, height=self.height, width=self.width,
                                    image=image)
            first = self.client.frame()
        except (ServiceError, TimeoutError) as err:
            self.close()
            raise WorldError(f"The world service could not open a {self.engine} world: "
                             f"{err}") from None
        self.frame_rate = float(info["frame_rate"])
        self.frames_per_step = int(info["frames_per_step"])
        self._action = IDLE
        self._last = self._chunk([first], IDLE)
        return self._last

    def _chunk(self, frames, action: Action) -> Chunk:
        self.dropped = frames[-1].dropped
        self.latency_s = frames[-1].received - frames[-1].header.sent
        return Chunk(np.stack([f.image for f in frames]),
                     np.array([f.header.world_time for f in frames]),
                     np.stack([f.pose for f in frames]), action,
                     {"chunk": frames[-1].chunk, "dropped": self.dropped,
                      "latency_s": self.latency_s})

    def step(self, action: Action) -> Chunk:
        """Send ``action`` if it changed; the next chunk's frames (the last one while idle)."""
        if self.client is None:
            raise WorldError("The remote world is not open; call reset() first.")
        try:
            if action != self._action:
                self.client.act(action)
                self._action = action
            if action.is_idle:  # the service pauses: the world stands still, paced as ever
                time.sleep(self.frames_per_step / self.frame_rate)
                last = self._last
                n = self.frames_per_step
                return Chunk(np.repeat(last.frames[-1:], n, axis=0),
                             np.repeat(last.timestamps[-1:], n), np.repeat(last.poses[-1:], n,
                                                                            axis=0),
                             action, dict(last.info))
            frames = [self.client.frame() for _ in range(self.frames_per_step)]
        except (ServiceError, TimeoutError) as err:
            raise WorldError(f"The world service stopped answering: {err}") from None
        self._last = self._chunk(frames, action)
        return self._last

    @property
    def pose(self) -> np.ndarray:
        if self._last is None:
            raise WorldError("The remote world is not open; call reset() first.")
        return self._last.poses[-1]

    def close(self) -> None:
        """End the session (the service frees it)."""
        client, self.client = self.client, None
        if client is not None:
            client.close()
