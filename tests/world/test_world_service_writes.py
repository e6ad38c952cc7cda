"""The world service's coalescing transport over a real loopback TCP connection.

The writes of one pass of the event loop must reach the socket as one write, in order and
complete, and closing must send what is kept before the end of the stream.
"""

from __future__ import annotations

import asyncio

import pytest
from websockets.frames import Frame, Opcode

from world.service_writes import CoalescingTransport, binary_frame_header


class _Recorder(asyncio.Protocol):
    """The receiving end: keeps every byte until the sender closes."""

    def __init__(self) -> None:
        self.data = bytearray()
        self.done = asyncio.get_running_loop().create_future()

    def data_received(self, data: bytes) -> None:
        self.data += data

    def eof_received(self) -> None:
        if not self.done.done():
            self.done.set_result(bytes(self.data))

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.done.done():
            self.done.set_result(bytes(self.data))


async def _pair():
    loop = asyncio.get_running_loop()
    received = loop.create_future()
    server = await loop.create_server(lambda: _recorder_into(received), "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    transport, _ = await loop.create_connection(asyncio.Protocol, "127.0.0.1", port)
    receiver = await asyncio.wait_for(received, 5)
    return server, transport, receiver


def _recorder_into(fut: asyncio.Future) -> _Recorder:
    rec = _Recorder()
    fut.set_result(rec)
    return rec


def test_one_pass_of_writes_reaches_the_socket_as_one_write_in_order():
    async def main():
        server, raw, receiver = await _pair()
        out = CoalescingTransport(raw, asyncio.get_running_loop())
        chunks = [bytes([i]) * (1000 + 97 * i) for i in range(6)]
        for c in chunks[:4]:
            out.write(c)
        out.writelines(chunks[4:])
        out.write(b"")  # nothing to keep
        # Kept, not written yet: one write is scheduled for the end of this pass.
        assert len(out._pending) == 6 and out._scheduled
        assert out.get_write_buffer_size() == sum(map(len, chunks))
        await asyncio.sleep(0)  # the pass ends: the flush runs
        assert out._pending == [] and not out._scheduled
        out.write(b"tail")  # a later pass: written by its own flush
        await asyncio.sleep(0)
        raw.write_eof()
        data = await asyncio.wait_for(receiver.done, 5)
        assert data == b"".join(chunks) + b"tail"
        raw.close()
        server.close()
        await server.wait_closed()

    asyncio.run(main())


def test_close_sends_what_is_kept_and_abort_drops_it():
    async def main():
        server, raw, receiver = await _pair()
        out = CoalescingTransport(raw, asyncio.get_running_loop())
        out.write(b"first ")
        out.write(b"last")
        out.close()  # before the scheduled flush: the kept bytes still go first
        assert out.is_closing()  # passed through to the real transport
        assert await asyncio.wait_for(receiver.done, 5) == b"first last"
        await asyncio.sleep(0)  # the scheduled flush finds nothing and writes nothing

        server2, raw2, receiver2 = await _pair()
        out2 = CoalescingTransport(raw2, asyncio.get_running_loop())
        out2.write(b"never sent")
        out2.abort()
        assert await asyncio.wait_for(receiver2.done, 5) == b""
        for s in (server, server2):
            s.close()
            await s.wait_closed()

    asyncio.run(main())


def test_the_service_writes_its_frames_through_it():
    from world.service import ServiceConfig, WorldService
    from world.service_client import WorldClient
    from world.service_writes import CoalescingWebSocketProtocol

    svc = WorldService(ServiceConfig(port=0, engines=("sandbox",))).start()
    try:
        with WorldClient(svc.url) as c:
            c.open(seed=1, height=32, width=32, pace=False)
            c.act("W")
            frames = [c.frame() for _ in range(20)]
            conns = list(svc._server.server_state.connections)
            ws = [p for p in conns if isinstance(p, CoalescingWebSocketProtocol)]
            assert len(ws) == 1 and isinstance(ws[0].transport, CoalescingTransport)
        # Whole frames, in order: each index follows the last, or the gap was counted dropped.
        for a, b in zip(frames, frames[1:], strict=False):
            assert b.index - a.index - 1 == b.dropped - a.dropped
            assert b.image.shape == (32, 32, 3)
    finally:
        svc.stop()


@pytest.mark.parametrize("size", [0, 1, 125, 126, 12_465, 65_535, 65_536, 196_785])
def test_frames_framed_here_are_the_bytes_websockets_writes(size):
    payload = bytes(range(256)) * (size // 256) + bytes(size % 256)
    wire = Frame(Opcode.BINARY, payload).serialize(mask=False, extensions=[])
    assert binary_frame_header(size) + payload == wire
