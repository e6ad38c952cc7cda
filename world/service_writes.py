"""Fewer socket writes for the world service: the bytes of one event-loop pass, written once.

uvicorn's WebSocket protocol writes every message to its transport at once, so a batch of
frames handed to the event loop together costs one ``write`` system call each (on loopback
each call also runs the receiving side of the TCP stack). :class:`CoalescingWebSocketProtocol`
gives the protocol a transport that collects what is written during one pass of the event loop
and writes it with one call at the end of the pass (``loop.call_soon``). The bytes and their
order on the wire do not change (every write is whole WebSocket frames, pings and closes
included, kept in order); only the number of system calls does, and a frame waits at most
until the loop finishes what it is doing.

The protocol also offers the app :data:`SEND_BINARY` (an ASGI scope extension): a binary
message sent through it gets its WebSocket frame header here and goes to the transport as it
is, without the per-message Python work of the ASGI layers and of ``websockets`` (a frame
object, its checks, three copies of the payload). ``send_bytes_now`` does so without an
``await``, so the service can send a batch from the very callback that tells it of the batch.
The bytes are those ``websockets`` would write (a server's frames are unmasked, and no
extension is negotiated: the service turns compression off); in any other state the message
takes the ordinary path.
"""

from __future__ import annotations

import asyncio
import contextlib
import struct
from collections.abc import Iterator
from typing import Any

from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from websockets.protocol import State

# The ASGI scope extension of a connection of :class:`CoalescingWebSocketProtocol`: its
# ``"send"``, ``"send_now"`` and ``"batch"`` are :meth:`~CoalescingWebSocketProtocol.send_bytes`,
# :meth:`~CoalescingWebSocketProtocol.send_bytes_now` and :meth:`CoalescingTransport.batch`.
SEND_BINARY = "yume.websocket.send_bytes"
_FIN_BINARY = 0x82  # FIN bit and opcode 2 (binary) of RFC 6455 section 5.2
_LEN16 = struct.Struct("!BBH")
_LEN64 = struct.Struct("!BBQ")


def binary_frame_header(size: int) -> bytes:
    """The header of one unmasked, final WebSocket binary frame of ``size`` payload bytes
    (what a server sends, RFC 6455 section 5.2)."""
    if size < 126:
        return bytes((_FIN_BINARY, size))
    if size < 1 << 16:
        return _LEN16.pack(_FIN_BINARY, 126, size)
    return _LEN64.pack(_FIN_BINARY, 127, size)


class CoalescingTransport:
    """A transport whose writes of one event-loop pass reach the real one as one write.

    Parameters
    ----------
    transport : asyncio.Transport
        The connection's transport; everything but :meth:`write`, :meth:`writelines`,
        :meth:`close` and :meth:`abort` is passed through to it.
    loop : asyncio.AbstractEventLoop
        The loop the transport runs on (the flush is scheduled there).
    """

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._pending: list[bytes] = []
        self._scheduled = False
        self._held = 0

    def write(self, data: bytes) -> None:
        """Keep ``data`` for the write at the end of this pass of the event loop."""
        if not data:
            return
        self._pending.append(data)
        if not self._scheduled and not self._held:
            self._scheduled = True
            self._loop.call_soon(self.flush)

    @contextlib.contextmanager
    def batch(self) -> Iterator[None]:
        """Write what is written inside the block with one call when it ends (not at the end
        of the pass: no extra callback for the loop to run)."""
        self._held += 1
        try:
            yield
        finally:
            self._held -= 1
            if not self._held:
                self.flush()

    def writelines(self, chunks: Any) -> None:
        """Keep each of ``chunks`` for the write at the end of this pass."""
        for data in chunks:
            self.write(data)

    def flush(self) -> None:
        """Write what was kept (one call to the real transport)."""
        self._scheduled = False
        if not self._pending:
            return
        pending, self._pending = self._pending, []
        if self._transport.is_closing():
            return  # the connection is gone: nothing can be delivered any more
        if len(pending) == 1:
            self._transport.write(pending[0])
        else:
            self._transport.writelines(pending)

    def close(self) -> None:
        """Write what is kept, then close (as a transport's close sends its buffer)."""
        self.flush()
        self._transport.close()

    def abort(self) -> None:
        """Drop what is kept and close at once."""
        self._pending = []
        self._transport.abort()

    def get_write_buffer_size(self) -> int:
        """Bytes not yet sent: those kept here and those in the real transport's buffer."""
        return sum(map(len, self._pending)) + self._transport.get_write_buffer_size()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


class CoalescingWebSocketProtocol(WebSocketsSansIOProtocol):
    """uvicorn's sans-I/O WebSocket protocol (``ws="websockets-sansio"``) writing through a
    :class:`CoalescingTransport`, with :meth:`send_bytes` offered to the app as
    :data:`SEND_BINARY`."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)  # reads the addresses off the real transport
        self.transport = CoalescingTransport(self.transport, self.loop)  # type: ignore[assignment]

    def handle_connect(self, event: Any) -> None:
        super().handle_connect(event)
        scope = getattr(self, "scope", None)  # only an accepted upgrade has a scope
        if scope is not None:
            scope.setdefault("extensions", {})[SEND_BINARY] = {
                "send": self.send_bytes, "send_now": self.send_bytes_now,
                "batch": self.transport.batch}

    async def send_bytes(self, data: bytes | bytearray | memoryview) -> None:
        """Send ``data`` as one binary message, framed here; nothing may change ``data`` after.

        Equivalent to the ASGI message ``{"type": "websocket.send", "bytes": data}``, which it
        falls back to (with its errors) unless the connection is open with nothing in the way.
        """
        await self.writable.wait()  # the transport's flow control, as for any message
        if not self.send_bytes_now(data):
            await self.send({"type": "websocket.send", "bytes": data})

    def send_bytes_now(self, data: bytes | bytearray | memoryview) -> bool:
        """Send ``data`` as one binary message now, if nothing is in the way.

        Returns
        -------
        bool
            False, with nothing sent, if the connection is not open, the transport asks for
            no more writes (flow control) or a fragmented message is in progress; the caller
            then uses :meth:`send_bytes`, which waits or raises.
        """
        conn = self.conn
        if (self.disconnected or self.close_sent or not self.writable.is_set()
                or conn.state is not State.OPEN or conn.extensions
                or conn.expect_continuation_frame):
            return False
        self.transport.write(binary_frame_header(len(data)))
        self.transport.write(data)
        return True
