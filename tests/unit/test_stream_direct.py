"""Direct frame writes (exchange/api/wsdirect.py): frames a client parses, and a real
uvicorn server where direct writes and ASGI sends arrive in the order they were made."""

import asyncio
import socket

import pytest
from websockets.frames import Frame, Opcode
from websockets.streams import StreamReader

from exchange.api.wsdirect import DirectSocket, find_protocol, text_frame


def _parse(data: bytes) -> Frame:
    reader = StreamReader()
    reader.feed_data(data)
    parser = Frame.parse(reader.read_exact, mask=False)
    with pytest.raises(StopIteration) as done:
        next(parser)
    assert not reader.buffer, "the frame has trailing bytes"
    return done.value.value


@pytest.mark.parametrize("size", [0, 1, 125, 126, 127, 65535, 65536, 200_000])
def test_text_frames_parse_back_to_their_payload_at_every_length_encoding(size):
    payload = (b'{"op":"mcm"}' * (size // 12 + 1))[:size]
    frame = _parse(text_frame(payload))
    assert frame.opcode == Opcode.TEXT and frame.fin and not frame.rsv1
    assert bytes(frame.data) == payload


def test_no_protocol_behind_a_plain_callable_or_none():
    async def send(message):
        return None

    assert find_protocol(None) is None
    assert find_protocol(send) is None
    assert find_protocol(lambda m: send(m)) is None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_direct_writes_and_asgi_sends_arrive_in_order_through_real_uvicorn():
    uvicorn = pytest.importorskip("uvicorn")
    websockets = pytest.importorskip("websockets")
    from starlette.websockets import WebSocket

    found = {}

    async def app(scope, receive, send):
        if scope["type"] != "websocket":
            return

        async def wrapped(message):          # a closure over the protocol's send, as Serve has
            await send(message)

        ws = WebSocket(scope, receive, wrapped)
        await ws.accept()
        direct = DirectSocket.of(ws)
        found["direct"] = direct is not None
        if direct is not None:
            assert direct.ready()
            direct.write(text_frame(b"one"))
        await ws.send_text("two")
        if direct is not None:
            direct.write(text_frame("three \u00e9".encode()))
        await ws.receive()                   # until the client closes

    async def main():
        port = _free_port()
        server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, lifespan="off",
                                               log_level="warning"))
        task = asyncio.ensure_future(server.serve())
        while not server.started:
            await asyncio.sleep(0.01)
        try:
            async with websockets.connect(f"ws://127.0.0.1:{port}/", compression="deflate") as ws:
                got = [await asyncio.wait_for(ws.recv(), 5) for _ in range(3)]
        finally:
            server.should_exit = True
            await task
        return got

    got = asyncio.run(main())
    assert found["direct"] is True
    assert got == ["one", "two", "three \u00e9"]
