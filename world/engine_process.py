"""Any world engine in a process of its own, behind the ordinary :class:`WorldEngine` calls.

The world service runs its network event loop and each session's engine in one Python
process, and a busy engine thread and the event loop then take turns with the interpreter
lock: every request that arrives while a frame is being made costs the loop a dozen thread
switches, and the loop's own work slows several-fold (measured: a 17 us action request costs
about 0.25 ms of CPU while a sandbox session renders; BENCHMARKS.md, World service). With the
engine in a child process the two no longer share a lock, and a crashed or stuck engine
cannot take the service with it: the child can be killed and the session told why.

:class:`ProcessWorld` starts the engine (``make_world(name, **kwargs)``) in a child process
and forwards :meth:`reset`, :meth:`step` and :meth:`close` over a pipe; the engine's exceptions
come back with their message (a :class:`WorldError` stays one). Children are forked from a
small fork server of our own (``python -m world.engine_process``, one per parent process, which
has already imported the sandbox), so a session opens in tens of milliseconds; an MVDT child
imports torch and loads its checkpoint itself. (multiprocessing's own forkserver re-imports the
parent's main module in every child, a script's included.)

The pipe carries data only (:mod:`world.engine_wire`: JSON and raw array buffers, never a
pickle), so nothing a child sends can make the service run code.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import numpy as np

from control.actions import IDLE, Action
from world.base import Chunk, WorldEngine, WorldError
from world.engine_wire import decode, encode

__all__ = ["EngineProcessError", "ProcessWorker", "ProcessWorld"]

# Modules the fork server imports once, so that each child starts with them loaded (torch is
# left out: a sandbox session would wait for it, and an MVDT child loads it with its model).
PRELOAD = ("numpy", "world.registry", "world.sandbox.engine")
# Attributes of the engine that the parent mirrors after construction and after each reset.
ATTRIBUTES = ("name", "frame_rate", "height", "width", "frames_per_step")
_PID = struct.Struct("!q")
_LEN = struct.Struct("!i")  # multiprocessing.connection's message header
_LEN64 = struct.Struct("!Q")


class EngineProcessError(WorldError):
    """The engine's process ended or stopped answering."""


class _ForkServer:
    """The parent's end of the fork server: starts it once, asks it for children."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._sock: socket.socket | None = None
        self._proc: subprocess.Popen | None = None

    def fork(self) -> tuple[int, Connection]:
        """A new child and the parent's end of its pipe (the child waits for its start)."""
        with self._lock:
            for attempt in range(2):
                if self._sock is None or self._proc is None or self._proc.poll() is not None:
                    self._start()
                ours, theirs = socket.socketpair()
                try:
                    socket.send_fds(self._sock, [b"f"], [theirs.fileno()])
                    data = _recv_exact(self._sock, _PID.size)
                except OSError:
                    ours.close()
                    self._stop()
                    if attempt:
                        raise EngineProcessError(
                            "The world engine's fork server does not answer.") from None
                    continue
                finally:
                    theirs.close()
                return _PID.unpack(data)[0], Connection(ours.detach())
        raise AssertionError("unreachable")

    def _start(self) -> None:
        self._stop()
        ours, theirs = socket.socketpair()
        root = str(Path(__file__).resolve().parents[1])  # the folder that holds `world`
        path = os.pathsep.join([root] + [p for p in os.environ.get("PYTHONPATH", "").split(
            os.pathsep) if p])
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "world.engine_process", str(theirs.fileno())],
            pass_fds=[theirs.fileno()], env=dict(os.environ, PYTHONPATH=path),
            stdin=subprocess.DEVNULL, start_new_session=False)
        theirs.close()
        self._sock = ours

    def _stop(self) -> None:
        if self._sock is not None:
            with contextlib.suppress(OSError):
                self._sock.close()
        self._sock = None
        if self._proc is not None and self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait(2.0)
        self._proc = None


_SERVER = _ForkServer()


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        part = sock.recv(n - len(data))
        if not part:
            raise OSError("closed")
        data += part
    return data


def fork_server_main(fd: int) -> None:
    """The fork server (``python -m world.engine_process FD``): fork a child per request.

    Single-threaded, so forking it is safe; it ends when the parent closes its socket.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # children are reaped by the kernel
    for name in PRELOAD:
        __import__(name)
    sock = socket.socket(fileno=fd)
    while True:
        try:
            _, fds, _, _ = socket.recv_fds(sock, 16, 1)
        except OSError:
            return
        if not fds:
            return  # the parent is gone
        pid = os.fork()
        if pid == 0:  # the child: drop the server's socket, serve its own pipe
            sock.close()
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)
            code = 0
            try:
                _child(Connection(fds[0]))
            except BaseException:  # noqa: BLE001 - a child never returns into the server loop
                code = 1
            finally:
                os._exit(code)
        os.close(fds[0])
        with contextlib.suppress(OSError):
            sock.sendall(_PID.pack(pid))


def _child(conn: Connection) -> None:
    try:
        _, name, kwargs, torch_threads = decode(conn.recv_bytes())
    except (EOFError, OSError):
        return
    _serve(conn, name, kwargs, torch_threads)


def _serve(conn: Connection, name: str, kwargs: dict, torch_threads: int | None) -> None:
    """The child: build the engine, then answer calls until ``close`` or the parent is gone."""
    # Ctrl+C in the terminal of `yume world serve` reaches the whole process group: the
    # parent decides when its engines stop.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if torch_threads is not None:
        import torch

        torch.set_num_threads(int(torch_threads))
    from world.registry import make_world

    try:
        engine = make_world(name, **kwargs)
    except BaseException as err:  # noqa: BLE001 - every failure goes back as a sentence
        conn.send_bytes(encode(("error", isinstance(err, WorldError), _message(err))))
        return
    conn.send_bytes(encode(("ok", _attributes(engine))))
    try:
        while True:
            try:
                method, args = decode(conn.recv_bytes())
            except (EOFError, OSError):
                return  # the parent is gone
            if method == "close":
                break
            try:
                if method == "reset":
                    result = (engine.reset(**args), _attributes(engine))
                elif method == "step":
                    result = engine.step(args)
                elif method == "pose":
                    result = np.asarray(engine.pose)
                elif method == "stream":
                    _stream(conn, engine, args)
                    return
                else:
                    raise WorldError(f"Unknown engine call {method!r}.")
            except Exception as err:  # noqa: BLE001 - the parent raises it again
                conn.send_bytes(encode(("error", isinstance(err, WorldError), _message(err))))
                continue
            conn.send_bytes(encode(("ok", result)))
    finally:
        with contextlib.suppress(Exception):
            engine.close()
        with contextlib.suppress(Exception):
            conn.send_bytes(encode(("ok", None)))


def _stream(conn: Connection, engine: WorldEngine, options: dict) -> None:
    """The child as a session's frame maker: a :class:`GenerationWorker` sends the encoded
    frames of every hand-off as one message; actions come in until ``close``."""
    from world.service_worker import GenerationWorker

    lock = threading.Lock()  # the generation and the pacing thread both send
    pending: list[bytearray] = []

    def send(message: tuple) -> None:
        try:
            conn.send_bytes(encode(message))
        except OSError:  # the parent is gone (or closed the pipe): end quietly
            worker.stop_soon()

    def post(frames: list[bytearray], wake: bool) -> None:
        with lock:
            pending.extend(frames)
            if wake and pending:
                send(("frames", list(pending), worker.chunks, worker.engine_cpu))
                pending.clear()

    def fail(message: str) -> None:
        with lock:
            send(("error", message))

    def receive(timeout: float) -> None:
        # Called by the generation thread: the actions that came in, the newest last.
        try:
            if not conn.poll(timeout):
                return
            while True:
                method, args = decode(conn.recv_bytes())
                if method == "action":
                    worker.set_action(args)
                elif method == "close":
                    worker.stop_soon()
                    return
                if not conn.poll(0):
                    return
        except (EOFError, OSError):
            worker.stop_soon()  # the parent is gone

    worker = GenerationWorker(engine, post, fail, receive=receive, **options)
    conn.send_bytes(encode(("ok", None)))
    worker.start()
    worker.wait_stopped()
    # A thread blocked on a full pipe cannot be joined; the parent ends the process then.
    worker.stop(timeout=1.0)


def _attributes(engine: WorldEngine) -> dict:
    return {k: getattr(engine, k) for k in ATTRIBUTES}


def _message(err: BaseException) -> str:
    text = str(err).strip()
    return text or type(err).__name__


class ProcessWorld(WorldEngine):
    """The world engine ``name`` running in a child process.

    Parameters
    ----------
    name : str
        A name of :func:`world.registry.available_worlds`.
    torch_threads : int, optional
        ``torch.set_num_threads`` in the child before the engine is built (MVDT).
    start_timeout : float
        Seconds the child has to build its engine (an MVDT loads its checkpoint).
    **kwargs
        Passed to :func:`world.registry.make_world` in the child (``height``, ``width``,
        ``seed``, ``checkpoint``...); they must be picklable.

    Raises
    ------
    WorldError
        With the engine's own message if it cannot be built, or if the child does not start.

    Examples
    --------
    >>> from control.actions import parse_action
    >>> world = ProcessWorld("sandbox", height=64, width=64)
    >>> first = world.reset(seed=3)
    >>> world.step(parse_action("W")).frames.shape
    (1, 64, 64, 3)
    >>> world.close()
    """

    def __init__(self, name: str, *, torch_threads: int | None = None,
                 start_timeout: float = 120.0, **kwargs: Any) -> None:
        self._lock = threading.Lock()
        self._closed = False
        self.pid, self._conn = _SERVER.fork()
        try:
            self._conn.send_bytes(encode(("start", name, kwargs, torch_threads)))
            attrs = self._receive(start_timeout)
        except BaseException:
            self._kill()
            raise
        self._mirror(attrs)

    # -- the engine calls
    def reset(self, seed: int | None = None, image: np.ndarray | None = None,
              clip: Sequence[np.ndarray] | None = None) -> Chunk:
        """Start a new world in the child (see :meth:`WorldEngine.reset`)."""
        chunk, attrs = self._call("reset", {"seed": seed, "image": image, "clip": clip})
        self._mirror(attrs)
        return chunk

    def step(self, action: Action) -> Chunk:
        """Advance the child's world by one chunk under ``action``."""
        return self._call("step", action)

    @property
    def pose(self) -> np.ndarray:
        """Camera-to-world pose of the child's last frame."""
        return self._call("pose", None)

    @property
    def alive(self) -> bool:
        """Whether the child process still runs."""
        try:
            os.kill(self.pid, 0)
        except OSError:
            return False
        # A child that has exited but not yet been reaped is a zombie: not alive.
        with contextlib.suppress(OSError):
            state = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
            return state not in ("Z", "X")
        return True

    def close(self, timeout: float = 5.0) -> None:
        """Close the engine and end the child (killed if it does not end within ``timeout``)."""
        if self._closed:
            return
        self._closed = True
        # A step still running in another thread holds the lock: then the child is ended
        # without waiting for it (that thread's call fails with EngineProcessError).
        if self._lock.acquire(timeout=timeout):
            try:
                with contextlib.suppress(Exception):
                    self._conn.send_bytes(encode(("close", None)))
                    if self._conn.poll(timeout):
                        decode(self._conn.recv_bytes())
            finally:
                self._lock.release()
        deadline = time.monotonic() + timeout
        while self.alive and time.monotonic() < deadline:
            time.sleep(0.01)
        self._kill()

    # -- plumbing
    def _call(self, method: str, args: Any) -> Any:
        with self._lock:
            if self._closed:
                raise EngineProcessError("The world engine has been closed.")
            data = encode((method, args))  # a WireError says what cannot be sent
            try:
                self._conn.send_bytes(data)
            except (OSError, ValueError):
                raise self._ended() from None
            return self._receive(None)

    def _receive(self, timeout: float | None) -> Any:
        """The child's answer to the last call; waits in slices so a dead child is noticed."""
        waited = 0.0
        while True:
            try:
                if self._conn.poll(1.0):
                    reply = decode(self._conn.recv_bytes())
                    break
            except (EOFError, OSError):
                raise self._ended() from None
            waited += 1.0
            if not self.alive and not self._conn.poll(0):
                raise self._ended()
            if timeout is not None and waited >= timeout:
                self._kill()
                raise EngineProcessError(
                    f"The world engine did not start within {timeout:g} s; it was stopped.")
        if reply[0] == "ok":
            return reply[1]
        _, is_world_error, message = reply
        raise (WorldError if is_world_error else RuntimeError)(message)

    def _ended(self) -> EngineProcessError:
        return EngineProcessError(f"The world engine's process (pid {self.pid}) ended "
                                  "unexpectedly.")

    def _mirror(self, attrs: dict) -> None:
        for key, value in attrs.items():
            setattr(self, key, value)

    def _kill(self) -> None:
        with contextlib.suppress(OSError):
            os.kill(self.pid, signal.SIGKILL)
        with contextlib.suppress(Exception):
            self._conn.close()

    def __del__(self) -> None:  # a session that was never closed must not leave its child
        with contextlib.suppress(Exception):
            if not self._closed:
                self._kill()


class ProcessWorker:
    """The parent's side of a session whose frames a :class:`ProcessWorld`'s child makes.

    The same interface as :class:`world.service_worker.GenerationWorker` (``start``,
    ``stop``, ``set_action``, ``action``, ``chunks``). The child's messages are read on the
    event loop ``loop`` (the pipe is one of its readers), so a batch of frames costs the
    service one wake-up and no thread switch; an action is one write to the pipe.

    Parameters
    ----------
    world : ProcessWorld
        The session's engine, reset.
    post, fail : callables
        As for :class:`~world.service_worker.GenerationWorker`; called on the event loop.
    loop : asyncio.AbstractEventLoop
        The event loop that reads the child's messages.
    **options
        ``fmt``, ``pace``, ``batch_s``, ``queue_frames``, ``label``: the child's
        :class:`~world.service_worker.GenerationWorker`.
    """

    def __init__(self, world: ProcessWorld, post: Callable[[list[bytearray], bool], None],
                 fail: Callable[[str], None], *, loop: Any, **options: Any) -> None:
        self.world = world
        self.post = post
        self.fail = fail
        self.loop = loop
        self.options = options
        self.chunks = 0
        self.engine_cpu = 0.0  # the child's CPU seconds inside engine.step, as last reported
        self._action = IDLE
        self._send_lock = threading.Lock()
        self._reading = False
        self._stopping = False
        # The child's bytes are read into one buffer (no allocation per read); the first
        # _filled bytes of it are a message not yet complete.
        self._buffer = bytearray(1 << 20)
        self._view = memoryview(self._buffer)
        self._filled = 0

    @property
    def action(self) -> Action:
        """The newest action sent to the child."""
        return self._action

    def start(self) -> None:
        """Switch the child to making frames and read them on the loop (call on the loop)."""
        self.world._call("stream", self.options)
        fd = self.world._conn.fileno()
        self.loop.add_reader(fd, self._readable)
        # uvloop (libuv) makes a watched descriptor non-blocking; the parent's writes expect
        # a blocking one, and _readable reads once per readiness, so it never waits.
        os.set_blocking(fd, True)
        self._reading = True

    def set_action(self, action: Action) -> None:
        """Send ``action`` to the child (the newest wins there)."""
        self._action = action
        data = encode(("action", action))
        with self._send_lock, contextlib.suppress(OSError, ValueError):
            self.world._conn.send_bytes(data)  # a dead child: the reader says so

    def stop(self, timeout: float = 2.0) -> None:
        """Stop reading and end the child (from any thread but the loop's)."""
        self._stopping = True
        done = threading.Event()

        def detach() -> None:
            self._detach()
            done.set()

        try:
            self.loop.call_soon_threadsafe(detach)
            done.wait(timeout)
        except RuntimeError:  # the loop has closed
            pass
        with self._send_lock:
            self.world.close(timeout=1.0)

    def _detach(self) -> None:
        if self._reading:
            self._reading = False
            with contextlib.suppress(Exception):
                self.loop.remove_reader(self.world._conn.fileno())

    def _readable(self) -> None:
        # One read per readiness (never a wait), the messages framed as multiprocessing's
        # Connection.send_bytes frames them: a 4-byte length (-1: an 8-byte one follows), then
        # a world.engine_wire message.
        buf, view = self._buffer, self._view
        if self._filled == len(buf):  # a message larger than the buffer: grow it
            view.release()  # a bytearray with an exported view cannot grow
            buf.extend(bytes(len(buf)))
            view = self._view = memoryview(buf)
        try:
            n = os.readv(self.world._conn.fileno(), [view[self._filled:]])
        except BlockingIOError:
            return
        except OSError:
            n = 0
        if not n:
            self._detach()
            if not self._stopping:
                self.fail(str(self.world._ended()))
            return
        end = self._filled + n
        start = 0
        while end - start >= 4:
            size, head = _LEN.unpack_from(buf, start)[0], 4
            if size == -1:
                if end - start < 12:
                    break
                size, head = _LEN64.unpack_from(buf, start + 4)[0], 12
            if end - start - head < size:
                break
            msg = decode(view[start + head:start + head + size])
            start += head + size
            if msg[0] == "frames":
                self.chunks, self.engine_cpu = msg[2], msg[3]
                self.post(msg[1], True)
            elif msg[0] == "error":
                self.fail(msg[1])
        if start:  # keep the incomplete tail at the front
            view[:end - start] = view[start:end]
        self._filled = end - start


if __name__ == "__main__":
    fork_server_main(int(sys.argv[1]))
