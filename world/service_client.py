"""A small blocking client of the world service (:mod:`world.service`).

>>> with WorldClient("ws://127.0.0.1:8765/ws") as client:   # doctest: +SKIP
...     info = client.open(engine="sandbox", seed=3, height=64, width=64)
...     first = client.frame()
...     client.act("W ←")
...     frame = client.frame()
"""

from __future__ import annotations

import base64
import io
import json
import socket
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import numpy as np
from PIL import Image
from websockets.exceptions import ConnectionClosed, InvalidStatus, WebSocketException
from websockets.protocol import State
from websockets.sync.client import ClientConnection, connect

from control.actions import Action
from world.protocol import WS_PATH, FrameHeader, ServiceError, decode_frame


class ConnectionLost(ServiceError):
    """The service cannot be reached, or the connection to it closed or broke."""


class Refused(ServiceError):
    """The service answered the connection with an HTTP error (a wrong or missing token).

    Attributes
    ----------
    status : int
        The HTTP status (401: the token is wrong or missing).
    """

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = int(status)


@dataclass
class RemoteFrame:
    """A frame received from the service, with the client's receive time.

    Attributes
    ----------
    image : ndarray, shape (H, W, 3), uint8
    header : FrameHeader
        Chunk id, frame index, action, world time, server timestamps, pose, dropped count.
    received : float
        Unix time (``time.time()``) when the client read it.
    nbytes : int
        Size of the message.
    """

    image: np.ndarray
    header: FrameHeader
    received: float
    nbytes: int

    @property
    def chunk(self) -> int:
        return self.header.chunk

    @property
    def index(self) -> int:
        return self.header.index

    @property
    def action(self) -> Action:
        return self.header.action

    @property
    def pose(self) -> np.ndarray:
        return self.header.pose

    @property
    def dropped(self) -> int:
        return self.header.dropped


def service_url(address: str) -> str:
    """``remote://host:port``, ``host:port`` or ``ws://host:port[/ws]`` as a WebSocket URL."""
    text = address.strip()
    if text.startswith("remote://"):
        text = "ws://" + text[len("remote://"):]
    elif "://" not in text:
        text = "ws://" + text
    parts = urlsplit(text)
    if parts.scheme not in ("ws", "wss") or not parts.hostname:
        raise ServiceError(f"{address!r} is not a world service address; use "
                           "remote://HOST:PORT or ws://HOST:PORT/ws.")
    path = parts.path if parts.path not in ("", "/") else WS_PATH
    query = f"?{parts.query}" if parts.query else ""
    return f"{parts.scheme}://{parts.netloc}{path}{query}"


def _encode_upload(data: Any) -> str:
    """Bytes, a file path, a PIL image or an RGB array as base64 (arrays become PNG)."""
    if isinstance(data, (str, Path)):
        data = Path(data).read_bytes()
    elif isinstance(data, Image.Image):
        buf = io.BytesIO()
        data.save(buf, format="PNG")
        data = buf.getvalue()
    elif isinstance(data, np.ndarray):
        buf = io.BytesIO()
        Image.fromarray(np.ascontiguousarray(data)).save(buf, format="PNG")
        data = buf.getvalue()
    return base64.b64encode(bytes(data)).decode("ascii")


class WorldClient:
    """One session with a world service over a WebSocket.

    Parameters
    ----------
    url : str
        ``ws://host:port/ws`` (or ``remote://host:port``).
    token : str, optional
        Sent as ``Authorization: Bearer TOKEN``.
    timeout : float
        Seconds to wait for the connection and for each reply.
    recv_buffer : int, optional
        Kernel receive buffer of the socket in bytes (small values make a slow reader lose
        frames sooner instead of accumulating delay).
    max_queue : int
        Messages the connection's reader thread buffers before it stops reading the socket.
    ping_interval : float, optional
        Seconds between pings from this side; a service that does not answer within
        ``timeout`` closes the connection, so a silently dead link is noticed (None: no pings,
        the service's own pings keep the connection checked from its side).

    Raises
    ------
    Refused
        If the service refuses the connection (a wrong or missing token).
    ConnectionLost
        If the service cannot be reached.
    """

    def __init__(self, url: str, token: str | None = None, timeout: float = 10.0,
                 recv_buffer: int | None = None, max_queue: int = 4,
                 ping_interval: float | None = None) -> None:
        self.url = service_url(url)
        self.timeout = float(timeout)
        self.info: dict | None = None
        self.messages: deque[dict] = deque(maxlen=256)  # JSON replies not yet asked for
        self._frames: deque[RemoteFrame] = deque()
        headers = {"Authorization": f"Bearer {token}"} if token else None
        sock = None
        parts = urlsplit(self.url)
        try:
            if recv_buffer:
                sock = socket.socket(socket.AF_INET6 if ":" in (parts.hostname or "")
                                     else socket.AF_INET, socket.SOCK_STREAM)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, int(recv_buffer))
                sock.settimeout(self.timeout)
                sock.connect((parts.hostname, parts.port or 80))
            self.ws: ClientConnection = connect(
                self.url, sock=sock, additional_headers=headers, compression=None,
                proxy=None, open_timeout=self.timeout, max_size=None,
                max_queue=max_queue, ping_interval=ping_interval, ping_timeout=self.timeout,
                legacy=True)  # a plain connection
        except InvalidStatus as err:
            if sock is not None:
                sock.close()
            body = (err.response.body or b"").decode("utf-8", "replace").strip()
            status = err.response.status_code
            raise Refused(f"The world service refused the connection (HTTP {status}): "
                          f"{body or 'no reason'}", status) from None
        except (OSError, WebSocketException, TimeoutError) as err:
            if sock is not None:
                sock.close()
            raise ConnectionLost(f"Cannot reach the world service at {self.url} "
                                 f"({err}).") from None

    # -- plumbing
    @property
    def alive(self) -> bool:
        """False once the connection has closed or broken (read without waiting)."""
        return self.ws.state is State.OPEN

    def send(self, message: dict | str | bytes) -> None:
        """Send a raw request (a dict is sent as JSON text).

        Raises
        ------
        ConnectionLost
            If the connection has closed.
        """
        try:
            self.ws.send(json.dumps(message) if isinstance(message, dict) else message)
        except (ConnectionClosed, OSError) as err:
            raise ConnectionLost(f"The world service connection is closed ({err}).") from None

    def receive(self, timeout: float | None = None) -> RemoteFrame | dict:
        """The next message: a :class:`RemoteFrame` or a JSON reply (dict).

        Raises
        ------
        TimeoutError
            If nothing arrives in time.
        ConnectionLost
            If the service closed the connection (or it broke).
        """
        try:
            data = self.ws.recv(timeout=self.timeout if timeout is None else timeout)
        except ConnectionClosed as err:
            rcvd = err.rcvd
            why = f"code {rcvd.code}, {rcvd.reason!r}" if rcvd else "no close frame"
            raise ConnectionLost(f"The world service closed the connection ({why}).") from None
        now = time.time()
        if isinstance(data, str):
            return json.loads(data)
        header, image = decode_frame(data)
        return RemoteFrame(image, header, now, len(data))

    def _wait(self, kind: str, timeout: float | None) -> dict:
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while True:
            msg = self.receive(max(deadline - time.monotonic(), 0.0))
            if isinstance(msg, RemoteFrame):
                self._frames.append(msg)
            elif msg.get("type") in (kind, "error"):
                return msg
            else:
                self.messages.append(msg)

    # -- requests
    def open(self, engine: str = "sandbox", seed: int | None = None, height: int = 64,
             width: int = 64, image: Any = None, clip: Any = None, fmt: str = "raw",
             pace: bool = True, **extra) -> dict:
        """Open the session; returns the service's ``opened`` reply.

        ``image`` and ``clip`` take bytes of a file, a path, a PIL image or (image only) an
        RGB array. ``extra`` fields (``frame_rate``, ``frames_per_step``) are sent as they are.

        Raises
        ------
        ServiceError
            With the service's sentence if it refuses the request.
        """
        msg: dict[str, Any] = {"type": "open", "engine": engine, "height": height,
                               "width": width, "format": fmt, "pace": pace, **extra}
        if seed is not None:
            msg["seed"] = seed
        if image is not None:
            msg["image"] = _encode_upload(image)
        if clip is not None:
            msg["clip"] = _encode_upload(clip)
        self.send(msg)
        reply = self._wait("opened", timeout=max(self.timeout, 60.0))  # MVDT loads weights
        if reply.get("type") == "error":
            raise ServiceError(reply["message"])
        self.info = reply
        return reply

    def act(self, action: str | Action) -> float:
        """Send an action (newest wins); returns the Unix time it was sent."""
        sent = time.time()
        self.send({"type": "action", "action": str(action)})
        return sent

    def frame(self, timeout: float | None = None) -> RemoteFrame:
        """The next frame (JSON replies met on the way are kept in :attr:`messages`).

        Raises
        ------
        ServiceError
            If the service reports an error instead.
        """
        if self._frames:
            return self._frames.popleft()
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while True:
            msg = self.receive(max(deadline - time.monotonic(), 0.0))
            if isinstance(msg, RemoteFrame):
                return msg
            if msg.get("type") == "error":
                raise ServiceError(msg["message"])
            self.messages.append(msg)

    def request(self, message: dict | str | bytes, timeout: float | None = None) -> dict:
        """Send ``message`` and return the next JSON reply (frames on the way are kept)."""
        self.send(message)
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while True:
            msg = self.receive(max(deadline - time.monotonic(), 0.0))
            if isinstance(msg, RemoteFrame):
                self._frames.append(msg)
            else:
                return msg

    def stats(self) -> dict:
        """The session's counts (frames generated, sent, dropped)."""
        self.send({"type": "stats"})
        reply = self._wait("stats", None)
        if reply.get("type") == "error":
            raise ServiceError(reply["message"])
        return reply

    def close(self) -> None:
        """End the session and the connection."""
        try:
            self.send({"type": "close"})
            # Read what is still on its way until the service closes: a full reader queue
            # would otherwise hide the service's close frame until the close timeout.
            deadline = time.monotonic() + self.timeout
            while time.monotonic() < deadline:
                self.ws.recv(timeout=max(deadline - time.monotonic(), 0.0))
        except (ConnectionClosed, ConnectionLost, OSError, TimeoutError):
            pass
        self.ws.close()

    def abort(self) -> None:
        """Drop the connection at once, without the closing handshake (for a dead link)."""
        self.ws.close_socket()

    def __enter__(self) -> WorldClient:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
