"""A world that runs in a world service (``yume world serve``), used like a local engine.

``make_world("remote://HOST:PORT", engine="mvdt")`` (or ``yume run --world
remote://HOST:PORT``) gives a :class:`~world.base.WorldEngine` whose frames come from the
service over a WebSocket: the window, headless runs and tasks keep their code while the model
runs on a GPU server. The service paces the frames at the world's rate and keeps generating with
the newest action, so :meth:`RemoteWorld.step` sends the action when it changes and returns the
next chunk's frames as they arrive; standing still is a pause on the service, answered here
with the last frame (paced the same way). The token comes from ``token`` or the environment
variable ``YUME_WORLD_TOKEN``.

The link survives a restart of the service and a dropped connection: a watcher thread notices
a closed connection (and, through pings, a silent one), and reconnects with a growing delay,
reopening a session from the last frame received, as an image start, so the world goes on from
the picture the person last saw (an MVDT world continues it; the sandbox cannot reproduce a
picture and starts a city tinted by it). Poses and world time carry on from where they were.
Meanwhile :meth:`RemoteWorld.step` returns the last frame, paced, and never raises;
:attr:`RemoteWorld.link_state` says what is happening, for the window's status bar.
"""

from __future__ import annotations

import io
import logging
import os
import threading
import time
from collections.abc import Sequence

import numpy as np
from PIL import Image

from control.actions import IDLE, Action
from world.base import Chunk, WorldEngine, WorldError, check_resolution, check_start
from world.protocol import ServiceError
from world.service_client import ConnectionLost, Refused, RemoteFrame, WorldClient, service_url

logger = logging.getLogger(__name__)

SCHEME = "remote://"
CONNECTED, RECONNECTING, LOST, CLOSED = "connected", "reconnecting", "lost", "closed"


def clip_png(frames: Sequence[np.ndarray]) -> bytes:
    """RGB frames as one animated PNG (lossless, unlike GIF's palette), the clip upload."""
    pictures = [Image.fromarray(np.ascontiguousarray(f, dtype=np.uint8)).convert("RGB")
                for f in frames]
    buf = io.BytesIO()
    pictures[0].save(buf, format="PNG", save_all=True, append_images=pictures[1:])
    return buf.getvalue()


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
        Seconds to wait for the connection and for each frame; a frame later than this counts
        as a lost link.
    reconnect : bool
        Reconnect after a lost link (False: the link stays lost and the world stands still).
    give_up_s : float or None
        Seconds of failed reconnecting after which the link is declared lost (None: never).
    backoff : tuple of float
        First and longest delay between reconnection attempts, in seconds (doubling).
    ping_interval : float or None
        Seconds between pings to the service, so that a silently dead link is noticed within
        about ``ping_interval + timeout`` even while the world stands still.

    Attributes
    ----------
    dropped : int
        Frames the service dropped for this client in the current session (it was too slow
        to read them).
    latency_s : float or None
        Time from the service sending the latest frame to this client reading it.
    reconnects : int
        Sessions reopened after a lost link since :meth:`reset`.
    """

    def __init__(self, address: str, engine: str = "sandbox", height: int = 256,
                 width: int = 256, token: str | None = None, timeout: float = 10.0,
                 reconnect: bool = True, give_up_s: float | None = 120.0,
                 backoff: tuple[float, float] = (0.25, 4.0),
                 ping_interval: float | None = 5.0) -> None:
        try:
            self.url = service_url(address)
        except ServiceError as err:
            raise WorldError(str(err)) from None
        self.engine = str(engine)
        self.height, self.width = check_resolution(height, width)
        self.name = f"{self.engine} at {address}"
        self.token = token if token is not None else os.environ.get("YUME_WORLD_TOKEN")
        self.timeout = float(timeout)
        self.reconnect = bool(reconnect)
        self.give_up_s = None if give_up_s is None else float(give_up_s)
        self.backoff = (float(backoff[0]), float(backoff[1]))
        self.ping_interval = ping_interval
        self.client: WorldClient | None = None
        self.dropped = 0
        self.latency_s: float | None = None
        self.reconnects = 0
        self._last: Chunk | None = None
        # The link: its state, since when it is down and why; guarded by _lock, which also
        # guards the swap of the client by the watcher thread.
        self._lock = threading.Lock()
        self._state = CLOSED
        self._down_since = 0.0
        self._reason = ""
        self._sent: tuple[WorldClient | None, Action] = (None, IDLE)  # last action per client
        # Reported pose = _pose_map @ the session's pose; world time = _time_shift + its time:
        # a reopened session starts from identity at time 0, the world carries on.
        self._pose_map = np.eye(4)
        self._time_shift = 0.0
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._watcher: threading.Thread | None = None

    # -- the link
    @property
    def link_state(self) -> str:
        """``"connected"``, ``"reconnecting (N s)"``, ``"lost: REASON"`` or ``"closed"``."""
        with self._lock:
            if self._state == RECONNECTING:
                return f"reconnecting ({time.monotonic() - self._down_since:.0f} s)"
            if self._state == LOST:
                return f"lost: {self._reason}"
            return self._state

    def _connect(self) -> WorldClient:
        return WorldClient(self.url, token=self.token, timeout=self.timeout,
                           ping_interval=self.ping_interval)

    def _refusal(self, err: Refused) -> str:
        if err.status in (401, 403):
            if self.token:
                return (f"The world service at {self.url} refused the token; set "
                        "YUME_WORLD_TOKEN to the token the service was started with.")
            return (f"The world service at {self.url} requires a token; set YUME_WORLD_TOKEN "
                    "to the token the service was started with.")
        return str(err)

    def _open(self, seed: int | None, image: np.ndarray | None,
              clip: bytes | None = None) -> tuple[WorldClient, dict, RemoteFrame]:
        """Connect, open a session and read its first frame (the client is closed on error)."""
        client = self._connect()
        try:
            info = client.open(self.engine, seed=seed, height=self.height, width=self.width,
                               image=image, clip=clip)
            first = client.frame()
        except BaseException:
            client.abort()
            raise
        return client, info, first

    def reset(self, seed: int | None = None, image: np.ndarray | None = None,
              clip: Sequence[np.ndarray] | None = None) -> Chunk:
        """Open a new session on the service (a running one is closed first).

        A ``clip`` (RGB frames, oldest first) is sent as a lossless animated PNG; the service's
        engine starts from its last frame and, where it has a memory, keeps it as history.

        Raises
        ------
        WorldError
            If both an image and a clip are given, or the service cannot be reached, refuses
            the token or cannot open the world.
        """
        frames = check_start(image, clip)
        upload = clip_png(frames) if frames is not None else None
        self.close()
        try:
            client, info, first = self._open(seed, image, upload)
        except Refused as err:
            raise WorldError(self._refusal(err)) from None
        except ConnectionLost as err:
            raise WorldError(str(err)) from None
        except (ServiceError, TimeoutError) as err:
            raise WorldError(f"The world service could not open a {self.engine} world: "
                             f"{err}") from None
        self.frame_rate = float(info["frame_rate"])
        self.frames_per_step = int(info["frames_per_step"])
        self._pose_map, self._time_shift = np.eye(4), 0.0
        self.reconnects = 0
        self._last = self._chunk([first], IDLE)
        with self._lock:
            self.client, self._state, self._reason = client, CONNECTED, ""
            self._sent = (client, IDLE)
        # Each session's watcher has its own stop: one left from a session closed a moment
        # ago (still waiting on the network) can never outlive its stop.
        self._stop = threading.Event()
        self._watcher = threading.Thread(target=self._watch, args=(self._stop,),
                                         name="remote-world-link", daemon=True)
        self._watcher.start()
        return self._last

    def _chunk(self, frames: list[RemoteFrame], action: Action) -> Chunk:
        self.dropped = frames[-1].dropped
        self.latency_s = frames[-1].received - frames[-1].header.sent
        poses = self._pose_map @ np.stack([f.pose for f in frames])
        return Chunk(np.stack([f.image for f in frames]),
                     self._time_shift + np.array([f.header.world_time for f in frames]),
                     poses, action,
                     {"chunk": frames[-1].chunk, "dropped": self.dropped,
                      "latency_s": self.latency_s, "link": CONNECTED})

    def _hold(self, action: Action) -> Chunk:
        """The last frame for one chunk's time: a pause, or a link being repaired."""
        time.sleep(self.frames_per_step / self.frame_rate)
        last, n = self._last, self.frames_per_step
        return Chunk(np.repeat(last.frames[-1:], n, axis=0), np.repeat(last.timestamps[-1:], n),
                     np.repeat(last.poses[-1:], n, axis=0), action,
                     dict(last.info, link=self.link_state))

    def _drop(self, client: WorldClient, reason: str) -> None:
        """Mark the link of ``client`` down (once) and let the watcher repair it."""
        with self._lock:
            if self.client is not client or self._state != CONNECTED:
                return  # already noticed, or an old client
            self.client = None
            self._down_since = time.monotonic()
            self._reason = reason.rstrip(".")  # shown inside a sentence
            self._state = RECONNECTING if self.reconnect else LOST
        client.abort()
        logger.warning("world service link lost (%s); %s", reason,
                       "reconnecting" if self.reconnect else "not reconnecting")
        self._wake.set()

    def _lose(self, reason: str) -> None:
        with self._lock:
            if self._state != RECONNECTING:
                return
            self._state, self._reason = LOST, reason.rstrip(".")
        logger.error("world service link lost for good: %s", reason)

    def _watch(self, stop: threading.Event) -> None:
        """Notice a closed connection and reconnect with a doubling delay, until ``stop``."""
        delay = self.backoff[0]
        while not stop.is_set():
            with self._lock:
                state, client = self._state, self.client
            if state == CONNECTED:
                if client is not None and not client.alive:
                    self._drop(client, self._closed_reason(client))
                    continue
                self._wake.wait(0.2)
                self._wake.clear()
                continue
            if state != RECONNECTING:
                self._wake.wait(0.5)
                self._wake.clear()
                continue
            waited = time.monotonic() - self._down_since
            if self.give_up_s is not None and waited > self.give_up_s:
                self._lose(f"{self._reason}; no answer for {self.give_up_s:g} s")
                continue
            try:
                self._resume(stop)
            except Refused as err:  # retrying the same token cannot help
                self._lose(self._refusal(err))
            except (ServiceError, WorldError, TimeoutError, OSError) as err:
                logger.info("world service reconnect failed (%s); next try in %.2g s", err,
                            delay)
                if stop.wait(delay):
                    return
                delay = min(2 * delay, self.backoff[1])
            except Exception as err:  # a bug must not leave the link "reconnecting" forever
                logger.exception("world service reconnect failed")
                self._lose(f"reconnecting failed ({err})")
            else:
                delay = self.backoff[0]

    @staticmethod
    def _closed_reason(client: WorldClient) -> str:
        code, why = client.ws.close_code, client.ws.close_reason
        if code is None or code == 1006:
            return "the connection broke"
        return f"the service closed the connection (code {code}{', ' + why if why else ''})"

    def _resume(self, stop: threading.Event) -> None:
        """Open a session from the last frame and make it the current one (unless stopped)."""
        last = self._last
        client, _info, first = self._open(None, last.frames[-1])
        # The new session starts at the identity pose and time 0: map them onto the old ones.
        pose_map = last.poses[-1] @ np.linalg.inv(first.pose)
        shift = float(last.timestamps[-1]) - first.header.world_time
        with self._lock:
            if stop.is_set() or self._state != RECONNECTING:
                client.abort()
                return
            down = time.monotonic() - self._down_since
            self._pose_map, self._time_shift = pose_map, shift
            self.client, self._state, self._reason = client, CONNECTED, ""
            self._sent = (client, IDLE)  # the new session starts paused
            self.reconnects += 1
        logger.warning("world service link back after %.1f s: session reopened from the last "
                       "frame (reconnect %d)", down, self.reconnects)

    # -- the engine
    def step(self, action: Action) -> Chunk:
        """Send ``action`` if it changed; the next chunk's frames.

        While the world stands still (idle) or the link is being repaired, the last frame,
        paced at the world's rate.

        Raises
        ------
        WorldError
            If the world was not opened, or the service reports that its engine failed.
        """
        if self._last is None:
            raise WorldError("The remote world is not open; call reset() first.")
        with self._lock:
            client = self.client if self._state == CONNECTED else None
            sent_client, sent_action = self._sent
        if client is None:
            return self._hold(action)
        try:
            if (sent_client, sent_action) != (client, action):
                client.act(action)
                with self._lock:
                    self._sent = (client, action)
            if action.is_idle:  # the service pauses: the world stands still, paced as ever
                return self._hold(action)
            frames = [client.frame() for _ in range(self.frames_per_step)]
        except ConnectionLost as err:
            self._drop(client, str(err))
            return self._hold(action)
        except TimeoutError:
            self._drop(client, f"no frame for {self.timeout:g} s")
            return self._hold(action)
        except ServiceError as err:  # the service's own sentence, e.g. its engine failed
            raise WorldError(f"The world service reports: {err}") from None
        self._last = self._chunk(frames, action)
        return self._last

    @property
    def pose(self) -> np.ndarray:
        if self._last is None:
            raise WorldError("The remote world is not open; call reset() first.")
        return self._last.poses[-1]

    def close(self) -> None:
        """End the session (the service frees it) and stop reconnecting."""
        self._stop.set()
        self._wake.set()
        if self._watcher is not None and self._watcher is not threading.current_thread():
            # A reconnect under way may wait on the network; it sees the stop and gives up.
            self._watcher.join(timeout=2.0)
        self._watcher = None
        with self._lock:
            client, self.client = self.client, None
            self._state = CLOSED
        if client is not None:
            client.close()
