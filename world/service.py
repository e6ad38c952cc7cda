"""The world service: any world engine behind a WebSocket API (FastAPI + uvicorn).

``yume world serve`` runs it; :class:`world.service_client.WorldClient` talks to it; ``GET
/viewer`` (and ``GET /``) is a minimal browser viewer (:mod:`world.service_viewer`).

Protocol (one WebSocket per session, at ``/ws``; defined in :mod:`world.protocol`)
----------------------------------------------------------------------------------
The client sends JSON text messages:

- ``{"type": "open", "engine": "sandbox", "seed": 3, "height": 64, "width": 64}`` opens the
  session. Optional fields: ``"image"`` (base64 of a PNG/JPEG... start picture), ``"clip"``
  (base64 of an animated GIF/PNG/WebP or multi-page TIFF; the world starts from its last frame
  and an MVDT or Wan world keeps the frames as its history),
  ``"format"`` (``"raw"``, the default, or ``"png"``: how frames are sent), ``"pace"`` (true,
  the default: frames leave at the world's frame rate; false: as fast as the engine generates
  them), ``"frame_rate"`` (frames per second of world time) and ``"frames_per_step"``
  (sandbox only). The service answers ``{"type": "opened", ...}`` and then sends the first frame.
- ``{"type": "action", "action": "W+A ←"}`` sets the action (parsed with
  :func:`control.actions.parse_action`); the newest action wins. The idle action ``"·"``
  pauses the world (no frames are generated).
- ``{"type": "stats"}`` asks for ``{"type": "stats", "generated", "sent", "dropped", ...}``.
- ``{"type": "close"}`` ends the session (closing the socket does too).

Frames come back as binary messages: a :data:`HEADER` (chunk id, frame index, world time,
generation and send times, camera pose, frames dropped so far) followed by the pixels, raw RGB
(``height * width * 3`` bytes) or a PNG file. Bad requests get ``{"type": "error", "message":
...}`` with one sentence, and the session (and the service) stays up.

Each session runs its engine in a thread of the service (with ``engine_process=True``, in a
process of its own: :mod:`world.engine_process`), where a
:class:`~world.service_worker.GenerationWorker` steps it and encodes the frames (a paced
session has a second thread that releases them at the world's pace). The event loop never
waits for an engine and only stamps and sends ready-made messages (from an engine process
the frames of one hand-off arrive as one message on its pipe), and what the loop writes in
one pass (a batch of frames) reaches the socket in one system call
(:mod:`world.service_writes`). An engine process that dies ends its session with a sentence
to the client; the service and the other sessions go on.
Frames for a client wait in a queue of :attr:`ServiceConfig.queue_frames` (2) frames (unpaced
sessions: at least a chunk and :data:`UNPACED_QUEUE`, as a fast engine's frames are handed
over a few at a time): when the client does not keep up, the oldest is dropped and counted,
so a slow client never slows generation for itself or anyone else.

Security: the service binds to 127.0.0.1 unless told otherwise, and refuses to start on any
other address without a token; when a token is set every client must send it
(``Authorization: Bearer TOKEN`` or ``?token=TOKEN``).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hmac
import ipaddress
import json
import logging
import socket
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import uvicorn
from fastapi import FastAPI, WebSocket
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse
from starlette.websockets import WebSocketDisconnect

from control.actions import IDLE, Action, ActionError, parse_action
from world.base import Chunk, WorldEngine, WorldError
from world.engine_process import ProcessWorker, ProcessWorld
from world.protocol import (
    FORMATS,
    HEADER,
    MAGIC,
    OPEN_FIELDS,
    VERSION,
    WS_PATH,
    FrameHeader,
    ServiceError,
    decode_clip,
    decode_frame,
    encode_frame,
    parse_open,
    parse_request,
    stamp_frame,
    ws_url,
)
from world.registry import available_worlds, make_world
from world.service_viewer import viewer_html
from world.service_worker import GenerationWorker
from world.service_writes import SEND_BINARY, CoalescingWebSocketProtocol

__all__ = [
    "UNPACED_QUEUE", "UNPACED_QUEUE_BYTES", "ServiceConfig", "Session", "WorldService",
    "check_bind", "is_loopback",
    # moved to world.protocol, still importable from here for existing code
    "FORMATS", "HEADER", "MAGIC", "OPEN_FIELDS", "VERSION", "WS_PATH", "FrameHeader",
    "ServiceError", "decode_clip", "decode_frame", "encode_frame", "parse_open",
    "parse_request", "stamp_frame",
]

logger = logging.getLogger(__name__)

# Frames an unpaced session may hold for its client: a batch (at most half of it) and room for
# the frames made while the event loop sends that batch; fewer for large frames, so that a
# slow client of an unpaced session holds at most about UNPACED_QUEUE_BYTES of them.
UNPACED_QUEUE = 64
UNPACED_QUEUE_BYTES = 16 * 1024 * 1024


def is_loopback(host: str) -> bool:
    """True if ``host`` names only this machine (``localhost``, 127.0.0.0/8, ``::1``)."""
    name = str(host).strip().strip("[]").lower()
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False  # a host name or a wildcard: reachable from elsewhere


def check_bind(host: str, token: str | None) -> None:
    """Refuse to serve on a non-loopback address without a token.

    Raises
    ------
    ServiceError
        If ``host`` is not a loopback address and ``token`` is empty.
    """
    if not is_loopback(host) and not (token or "").strip():
        raise ServiceError(
            f"Serving on {host} makes the world reachable from other machines; set a token "
            "with --token or YUME_WORLD_TOKEN, or bind to 127.0.0.1.")


@dataclass
class ServiceConfig:
    """Address, access and limits of a :class:`WorldService`.

    Attributes
    ----------
    host, port : str, int
        Where to listen (port 0: any free port; see :attr:`WorldService.port`).
    token : str or None
        Required from every client when set; mandatory on a non-loopback ``host``.
    engines : tuple of str
        Engines a session may open (names of :func:`world.registry.available_worlds`).
    checkpoint : path or None
        MVDT checkpoint folder (default: the shipped one).
    device : str
        Torch device of MVDT sessions.
    torch_threads : int
        Torch CPU threads (shared by all MVDT sessions of the process).
    max_sessions : int
        Sessions open at once; one more is refused with an error.
    max_side : int
        Largest frame height or width a session may ask for.
    max_upload_bytes : int
        Largest start image or clip (decoded bytes).
    queue_frames : int
        Frames that may wait for a client of a paced session; beyond that the oldest is
        dropped (unpaced sessions: at least one chunk, and :data:`UNPACED_QUEUE` frames or
        :data:`UNPACED_QUEUE_BYTES` of them).
    batch_s : float
        Unpaced sessions: frames made within this many seconds of the last hand-off to the
        event loop are handed over together (at most half the queue), so that a fast engine
        wakes the loop once per many frames, not once per frame: every wake-up costs thread
        switches and hand-overs of the interpreter lock, and on a small VM they were most of
        the service's own cost (50 ms: 84 us per 64x64 sandbox frame, 10 ms: 155 us;
        BENCHMARKS.md). Paced sessions do not batch. 0: every chunk at once.
    engine_process : bool
        Run each session's engine in a process of its own (:class:`world.engine_process.
        ProcessWorld`): a crashed engine then ends only its session, and the event loop shares
        no interpreter lock with it. Off by default: on the 2-core development VM the
        wake-ups between processes cost more CPU per frame than the shared lock does
        (BENCHMARKS.md, World service); worth it for engines whose frames cost far more than
        that (a GPU model) or that may crash.
    socket_buffer : int or None
        Kernel send/receive buffer of each connection in bytes (None: the kernel's
        auto-tuning, which lets several megabytes pile up for a slow client before frames are
        dropped).
    open_timeout : float
        Seconds a new connection has to send its ``open`` request.
    ping_interval : float
        Seconds between WebSocket pings (a client that stops answering is disconnected).
    """

    host: str = "127.0.0.1"
    port: int = 8765
    token: str | None = None
    engines: tuple[str, ...] = ("sandbox", "mvdt")
    checkpoint: Path | None = None
    device: str = "cpu"
    torch_threads: int = 1
    max_sessions: int = 4
    max_side: int = 1024
    max_upload_bytes: int = 8 * 1024 * 1024
    queue_frames: int = 2
    batch_s: float = 0.05
    engine_process: bool = False
    socket_buffer: int | None = 256 * 1024
    open_timeout: float = 10.0
    ping_interval: float = 5.0

    def __post_init__(self) -> None:
        check_bind(self.host, self.token)
        unknown = set(self.engines) - set(available_worlds())
        if unknown:
            raise ServiceError(f"Unknown engine(s) {', '.join(sorted(unknown))}; choose from "
                               f"{', '.join(available_worlds())}.")
        for name in ("max_sessions", "max_side", "max_upload_bytes", "queue_frames",
                     "torch_threads"):
            if int(getattr(self, name)) < 1:
                raise ServiceError(f"{name} must be at least 1, got {getattr(self, name)}.")
        if not 0 <= self.batch_s <= 1:
            raise ServiceError(f"batch_s must lie between 0 and 1 second, got {self.batch_s}.")


# ---------------------------------------------------------------------------- sessions


class Session:
    """One client's world: its engine, the worker that makes its frames, and its frame queue.

    Parameters
    ----------
    sid : int
        Session number (for logs and stats).
    engine : WorldEngine
        The world, already reset; a :class:`world.engine_process.ProcessWorld` makes its
        frames in its own process (:class:`world.engine_process.ProcessWorker`), any other
        engine in threads of this one (:class:`world.service_worker.GenerationWorker`).
    first : Chunk
        The reset chunk, sent first.
    loop : asyncio.AbstractEventLoop
        The event loop of the connection; frames are handed to it thread-safely.
    fmt : str
        ``"raw"`` or ``"png"``.
    pace : bool
        Release frames at the world's frame rate (True) or as they are generated.
    queue_frames : int
        Frames that may wait for the client before the oldest is dropped (unpaced: at least
        one chunk and :data:`UNPACED_QUEUE`).
    batch_s : float
        Unpaced: frames made within this time of the last hand-off to the event loop are
        handed over together (:attr:`ServiceConfig.batch_s`).
    """

    def __init__(self, sid: int, engine: WorldEngine, first: Chunk,
                 loop: asyncio.AbstractEventLoop, fmt: str = "raw", pace: bool = True,
                 queue_frames: int = 2, batch_s: float = 0.0) -> None:
        self.sid = sid
        self.engine = engine
        self.fmt = fmt
        self.pace = pace
        self.loop = loop
        self.outbox: deque[bytearray] = deque()
        self._out_lock = threading.Lock()
        self._wake_pending = False
        # Unpaced, a whole chunk (or a batch of them) arrives at once: the queue holds it.
        frame_bytes = HEADER.size + 3 * int(engine.height) * int(engine.width)
        self.queue_frames = int(queue_frames) if pace else max(
            int(queue_frames), int(engine.frames_per_step),
            min(UNPACED_QUEUE, max(2, UNPACED_QUEUE_BYTES // frame_bytes)))
        self.batch_s = float(batch_s)
        self.ready = asyncio.Event()
        # Set by the connection while it runs: sends what waits at once, on the event loop;
        # False when the sender task has to.
        self.send_now: Callable[[], bool] | None = None
        self.generated = 0
        self.sent = 0
        self.dropped = 0
        self.error: str | None = None
        self._loop_thread: int | None = None  # set by start(), which runs on the loop
        options = dict(fmt=fmt, pace=pace, batch_s=self.batch_s,
                       queue_frames=self.queue_frames, label=f"session-{sid}")
        fail = functools.partial(self._to_loop, self._fail)
        self.worker: GenerationWorker | ProcessWorker = (
            ProcessWorker(engine, self._post, fail, loop=loop, **options)
            if isinstance(engine, ProcessWorld) else
            GenerationWorker(engine, self._post, fail, **options))
        self._first = first
        seed = first.info.get("seed")
        self.seed = None if seed is None else int(seed)
        self.clip_frames = 0  # frames of the clip the session was opened from

    # -- called on the event loop
    def start(self) -> None:
        """Queue the first frame and start the worker."""
        self._loop_thread = threading.get_ident()
        f = self._first
        self._post([encode_frame(f.frames[0], f.poses[0], chunk=0, index=0, offset=0,
                                 action=IDLE, world_time=float(f.timestamps[0]),
                                 generated=time.time(), fmt=self.fmt)])
        self.worker.start()

    def _post(self, frames: list[bytearray], wake: bool = True) -> None:
        """Append frames for the client, dropping the oldest beyond the queue's size.

        Called by the worker (from its threads, or on the event loop for a worker in another
        process) and once from the event loop. With ``wake`` the event loop is told (once
        until it has looked: not once per frame); without, the frames wait for the next call
        that wakes it.
        """
        with self._out_lock:
            self.generated += len(frames)
            self.outbox.extend(frames)
            while len(self.outbox) > self.queue_frames:
                self.outbox.popleft()
                self.dropped += 1
            if wake and not self._wake_pending:
                self._wake_pending = True
            else:
                wake = False  # the loop is already told (or is not to be yet)
        if wake:
            if threading.get_ident() == self._loop_thread:
                self._wake_sender()  # a worker in another process: posted on the loop already
            else:
                self._to_loop(self._wake_sender)

    def _wake_sender(self) -> None:
        with self._out_lock:
            self._wake_pending = False
        # Send from this very callback when the connection can: one callback of the loop per
        # batch, where waking the sender task costs two more (each one a wait for the GIL
        # while an engine thread runs). The task otherwise (errors, flow control, closing).
        if self.send_now is None or self.ready.is_set() or not self.send_now():
            self.ready.set()

    def put_back(self, data: bytearray) -> None:
        """Return a frame taken with :meth:`pop` that could not be sent (it goes first)."""
        with self._out_lock:
            self.outbox.appendleft(data)

    def pop(self) -> bytearray | None:
        """The oldest frame waiting for the client, or None."""
        with self._out_lock:
            return self.outbox.popleft() if self.outbox else None

    def _fail(self, message: str) -> None:
        self.error = message
        self.ready.set()

    # -- called from any thread
    @property
    def action(self) -> Action:
        """The action the next chunk is generated with."""
        return self.worker.action

    @property
    def chunks(self) -> int:
        """Chunks generated so far."""
        return self.worker.chunks

    def set_action(self, action: Action) -> None:
        """Make ``action`` the newest action (it replaces any other not yet used)."""
        self.worker.set_action(action)

    def stop(self) -> None:
        """Stop the worker and release the engine (blocks up to a few seconds)."""
        self.worker.stop()
        try:
            self.engine.close()
        except Exception:  # closing must not take the service down
            logger.exception("closing world session %d", self.sid)

    def _to_loop(self, fn, *args) -> None:
        with contextlib.suppress(RuntimeError):  # the loop has closed: the service is ending
            self.loop.call_soon_threadsafe(fn, *args)

    def stats(self) -> dict:
        """Counts of this session (frames generated, sent and dropped, chunks) and the CPU
        seconds its engine's steps took (``engine_cpu_s``: the rest of the service's CPU is
        the service's own)."""
        return {"type": "stats", "session": self.sid, "engine": self.engine.name,
                "generated": self.generated, "sent": self.sent, "dropped": self.dropped,
                "chunks": self.chunks, "action": str(self.action),
                "engine_cpu_s": round(self.worker.engine_cpu, 6)}


# ---------------------------------------------------------------------------- the app


class WorldService:
    """The FastAPI app and its uvicorn server.

    Parameters
    ----------
    config : ServiceConfig
        Address, token and limits.

    Examples
    --------
    >>> service = WorldService(ServiceConfig(port=0)).start()   # doctest: +SKIP
    >>> service.url                                              # doctest: +SKIP
    'ws://127.0.0.1:40123/ws'
    >>> service.stop()                                           # doctest: +SKIP
    """

    def __init__(self, config: ServiceConfig | None = None) -> None:
        self.config = config or ServiceConfig()
        self.sessions: dict[int, Session] = {}
        self._opening = 0
        self._next_id = 1
        self.app = self._build_app()
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._socket: socket.socket | None = None
        self.port: int = int(self.config.port)

    # -- network
    def bind(self) -> int:
        """Open the listening socket (once); returns the port (useful with port 0)."""
        if self._socket is None:
            self._socket = self._bind()
        return self.port

    def _bind(self) -> socket.socket:
        cfg = self.config
        family = socket.AF_INET6 if ":" in cfg.host.strip("[]") else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if cfg.socket_buffer:
            # Accepted connections inherit these: a slow client then fills a small kernel
            # buffer quickly and loses frames from the queue instead of megabytes of delay.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, int(cfg.socket_buffer))
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, int(cfg.socket_buffer))
        try:
            sock.bind((cfg.host.strip("[]"), int(cfg.port)))
        except OSError as err:
            sock.close()
            raise ServiceError(f"Cannot listen on {cfg.host}:{cfg.port} ({err.strerror}); "
                               "choose another --port or --host.") from None
        sock.listen(64)
        self.port = sock.getsockname()[1]
        return sock

    def _uvicorn(self) -> uvicorn.Server:
        cfg = self.config
        upload = 4 * (cfg.max_upload_bytes // 3 + 2)
        config = uvicorn.Config(
            # uvicorn's sans-I/O WebSocket protocol, with the writes of one pass of the event
            # loop joined into one system call (a batch of frames: one write, not one each).
            self.app, log_level="warning", lifespan="off", ws=CoalescingWebSocketProtocol,
            # An open request carries the base64 upload; room for the JSON around it, and a
            # message past twice the upload limit is closed with 1009 (too big) unread.
            ws_max_size=2 * upload + 64 * 1024,
            ws_ping_interval=cfg.ping_interval, ws_ping_timeout=2 * cfg.ping_interval,
            ws_per_message_deflate=False,  # zlib on every frame costs more than loopback saves
            timeout_graceful_shutdown=2)
        return uvicorn.Server(config)

    @property
    def url(self) -> str:
        """The WebSocket address of the service (``ws://host:port/ws``)."""
        return ws_url(self.config.host, self.port)

    def start(self) -> WorldService:
        """Serve in a background thread; returns once the port accepts connections."""
        self.bind()
        self._server = self._uvicorn()
        self._thread = threading.Thread(target=self._server.run,
                                        kwargs={"sockets": [self._socket]},
                                        name="world-service", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 10.0
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise ServiceError("The world service did not start; see the log above.")
            time.sleep(0.01)
        return self

    def serve_forever(self) -> None:
        """Serve in this thread until Ctrl+C or SIGTERM."""
        self.bind()
        self._server = self._uvicorn()
        try:
            self._server.run(sockets=[self._socket])
        finally:
            self._close_all()

    def stop(self) -> None:
        """Stop serving, end every session and close the socket."""
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10.0)
            self._thread = None
        self._close_all()

    def _close_all(self) -> None:
        for s in list(self.sessions.values()):
            s.stop()
        self.sessions.clear()
        if self._socket is not None:
            self._socket.close()
            self._socket = None

    # -- app
    def status(self) -> dict:
        """What ``GET /status`` answers: sessions and limits."""
        cfg = self.config
        return {"sessions": len(self.sessions), "opening": self._opening,
                "max_sessions": cfg.max_sessions, "max_side": cfg.max_side,
                "max_upload_bytes": cfg.max_upload_bytes, "engines": list(cfg.engines),
                "queue_frames": cfg.queue_frames, "token_required": bool(cfg.token),
                "ws_path": WS_PATH,
                "session_stats": [s.stats() for s in self.sessions.values()]}

    def authorised(self, headers, query) -> bool:
        """True if no token is configured or the request carries the right one."""
        token = self.config.token
        if not token:
            return True
        given = query.get("token") or ""
        auth = headers.get("authorization") or ""
        if auth.lower().startswith("bearer "):
            given = auth[7:].strip()
        return hmac.compare_digest(given.encode(), token.encode())

    def _build_app(self) -> FastAPI:
        app = FastAPI(title="Yume world service", docs_url=None, redoc_url=None,
                      openapi_url=None)

        page = viewer_html()

        @app.get("/viewer", response_class=HTMLResponse)
        async def viewer() -> str:
            return page

        @app.get("/", response_class=HTMLResponse)
        async def root() -> str:
            return page

        @app.get("/status")
        async def status() -> JSONResponse:
            return JSONResponse(self.status())

        @app.websocket(WS_PATH)
        async def ws_endpoint(ws: WebSocket) -> None:
            await self._connection(ws)

        return app

    async def _connection(self, ws: WebSocket) -> None:
        if not self.authorised(ws.headers, ws.query_params):
            reason = ("A token is required: send Authorization: Bearer TOKEN or ?token=TOKEN."
                      if self.config.token else "")
            try:
                await ws.send_denial_response(PlainTextResponse(reason, status_code=401))
            except RuntimeError:  # the server offers no denial responses: a plain refusal
                await ws.close(code=1008, reason=reason[:120])
            return
        await ws.accept()
        session: Session | None = None
        sender: asyncio.Task | None = None
        try:
            session = await self._open(ws)
            if session is None:
                return
            sender = asyncio.create_task(self._send_frames(ws, session))
            while True:
                msg = await ws.receive()
                if msg["type"] == "websocket.disconnect":
                    return
                if sender.done():
                    return
                if not await self._request(ws, session, msg):
                    await ws.close(code=1000)
                    return
        except WebSocketDisconnect:
            return
        except Exception:  # one connection's failure never takes the service down
            logger.exception("world service connection failed")
            with contextlib.suppress(Exception):
                await ws.close(code=1011)
        finally:
            if sender is not None:
                sender.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await sender
            if session is not None:
                self.sessions.pop(session.sid, None)
                await asyncio.to_thread(session.stop)

    async def _error(self, ws: WebSocket, message: str, request: str | None = None) -> None:
        await ws.send_text(json.dumps({"type": "error", "message": message,
                                       "request": request}))

    async def _open(self, ws: WebSocket) -> Session | None:
        """Wait for a valid ``open`` request and start its session (None: the client left)."""
        cfg = self.config
        while True:
            try:
                msg = await asyncio.wait_for(ws.receive(), timeout=cfg.open_timeout)
            except TimeoutError:
                await self._error(ws, f"No open request within {cfg.open_timeout:g} s; send "
                                      '{"type": "open", ...} first.', "open")
                await ws.close(code=1008)
                return None
            if msg["type"] == "websocket.disconnect":
                return None
            try:
                data = parse_request(msg.get("text"))
                if data["type"] == "close":
                    await ws.close(code=1000)
                    return None
                if data["type"] != "open":
                    raise ServiceError(f'Open a session first with {{"type": "open", ...}}; '
                                       f"got a {data['type']!r} request.")
                if len(self.sessions) + self._opening >= cfg.max_sessions:
                    await self._error(ws, f"The service already runs {cfg.max_sessions} "
                                          "sessions, its limit; try again later.", "open")
                    await ws.close(code=1013)
                    return None
                self._opening += 1
                try:
                    session = await asyncio.to_thread(self._make_session, data,
                                                      asyncio.get_running_loop())
                finally:
                    self._opening -= 1
            except (ServiceError, WorldError) as err:
                await self._error(ws, str(err), "open")
                continue
            self.sessions[session.sid] = session
            eng = session.engine
            await ws.send_text(json.dumps({
                "type": "opened", "session": session.sid, "engine": eng.name,
                "height": eng.height, "width": eng.width,
                "frames_per_step": eng.frames_per_step, "frame_rate": eng.frame_rate,
                "format": session.fmt, "pace": session.pace,
                "queue_frames": session.queue_frames,
                "seed": session.seed, "clip_frames": session.clip_frames}))
            session.start()
            return session

    def _make_session(self, data: dict, loop: asyncio.AbstractEventLoop) -> Session:
        req = parse_open(data, self.config)
        kwargs = dict(req.engine_kwargs, height=req.height, width=req.width)
        if req.engine == "mvdt":
            kwargs["device"] = self.config.device
        if req.seed is not None:
            kwargs["seed"] = req.seed
        checkpoint = self.config.checkpoint if req.engine == "mvdt" else None
        threads = self.config.torch_threads if req.engine == "mvdt" else None
        if self.config.engine_process:
            engine: WorldEngine = ProcessWorld(req.engine, torch_threads=threads,
                                               checkpoint=checkpoint, **kwargs)
        else:
            if threads is not None:
                import torch  # only MVDT needs it; loaded with the engine

                torch.set_num_threads(threads)
            engine = make_world(req.engine, checkpoint=checkpoint, **kwargs)
        try:
            first = engine.reset(seed=req.seed, image=req.image, clip=req.clip)
        except Exception:
            engine.close()
            raise
        sid = self._next_id
        self._next_id += 1
        session = Session(sid, engine, first, loop, req.format, req.pace,
                          self.config.queue_frames, self.config.batch_s)
        session.clip_frames = req.clip_frames
        return session

    async def _request(self, ws: WebSocket, session: Session, msg: dict) -> bool:
        """Handle one request of an open session; False ends the session."""
        try:
            data = parse_request(msg.get("text"))
            kind = data["type"]
            if kind == "action":
                text = data.get("action")
                if not isinstance(text, str):
                    raise ServiceError('An action request needs "action": a key string such '
                                       'as "W+A ←" or "S, LEFT".')
                try:
                    session.set_action(parse_action(text))
                except ActionError as err:
                    raise ServiceError(str(err)) from None
            elif kind == "stats":
                await ws.send_text(json.dumps(session.stats()))
            elif kind == "close":
                return False
            elif kind == "open":
                raise ServiceError("This connection already has a session; close it or open "
                                   "another connection.")
            else:
                raise ServiceError(f"Unknown request type {kind!r}; use open, action, stats or "
                                   "close.")
        except ServiceError as err:
            await self._error(ws, str(err), None)
        return True

    async def _send_frames(self, ws: WebSocket, session: Session) -> None:
        # The encoded buffer itself goes out (no bytes() copy): nothing writes to it any more.
        # Our uvicorn protocol frames it and hands it to the socket as it is; under another
        # server it goes the ASGI way (the WebSocket layer copies it into its frame).
        ext = ws.scope.get("extensions", {}).get(SEND_BINARY, {})
        direct, now, batch = ext.get("send"), ext.get("send_now"), ext.get("batch")
        busy = False  # the task is sending: the callback leaves the frames to it (order)

        def send_now() -> bool:
            if busy or session.error:
                return False
            try:
                with batch():
                    while (data := session.pop()) is not None:
                        stamp_frame(data, time.time(), session.dropped)
                        if not now(data):
                            session.put_back(data)
                            return False
                        session.sent += 1
            except Exception:  # the task then meets the problem and ends the connection
                return False
            return True

        if now is not None and batch is not None:
            session.send_now = send_now
        try:
            while True:
                await session.ready.wait()
                session.ready.clear()
                busy = True
                if session.error:
                    await self._error(ws, session.error, None)
                    session.error = None
                while (data := session.pop()) is not None:
                    stamp_frame(data, time.time(), session.dropped)
                    if direct is not None:
                        await direct(data)
                    else:
                        await ws.send({"type": "websocket.send", "bytes": data})
                    session.sent += 1
                busy = False
        finally:
            session.send_now = None

