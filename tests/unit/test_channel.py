"""The hosts' direct channel (actors/channel.py) over real local TCP connections: calls
in flight together answered by id, errors, the secret, loss of the host, and a Link that
finds a restarted host again."""

import asyncio

import pytest

from actors.channel import MAX_FRAME_BYTES, Channel, ChannelClosed, ChannelServer, Link, RemoteError


async def _server(**handlers) -> ChannelServer:
    server = ChannelServer(handlers)
    await server.start()
    return server


async def test_calls_in_flight_together_are_each_answered_with_their_own_reply():
    release = asyncio.Event()

    async def slow(payload: bytes) -> bytes:
        await release.wait()
        return b"slow:" + payload

    async def fast(payload: bytes) -> bytes:
        return b"fast:" + payload

    server = await _server(slow=slow, fast=fast)
    channel = await Channel.connect(server.endpoint)
    try:
        first = channel.call("slow", b"1")
        quick = [channel.call("fast", bytes([i])) for i in range(100)]
        assert await asyncio.gather(*quick) == [b"fast:" + bytes([i]) for i in range(100)]
        assert not first.done(), "a slow call does not hold up the ones after it"
        release.set()
        assert await first == b"slow:1"
        big = b"x" * 3_000_000
        assert await channel.call("fast", big) == b"fast:" + big
    finally:
        channel.close()
        await server.close()


async def test_a_handler_that_raises_answers_that_call_only():
    async def boom(payload: bytes) -> bytes:
        raise ValueError("bad batch " + payload.decode())

    async def echo(payload: bytes) -> bytes:
        return payload

    server = await _server(boom=boom, echo=echo)
    channel = await Channel.connect(server.endpoint)
    try:
        with pytest.raises(RemoteError, match="ValueError: bad batch 7"):
            await channel.call("boom", b"7")
        with pytest.raises(RemoteError, match="no method 'nope'"):
            await channel.call("nope", b"")
        assert await channel.call("echo", b"still here") == b"still here"
    finally:
        channel.close()
        await server.close()


async def test_a_caller_without_the_secret_is_not_served():
    calls = []

    async def echo(payload: bytes) -> bytes:
        calls.append(payload)
        return payload

    server = await _server(echo=echo)
    address, port, secret = server.endpoint
    wrong = bytes(b ^ 1 for b in secret)
    channel = await Channel.connect((address, port, wrong))
    try:
        with pytest.raises(ChannelClosed):
            await asyncio.wait_for(channel.call("echo", b"x"), 5)
        assert calls == [], "nothing ran"
    finally:
        channel.close()
        await server.close()


async def test_a_host_that_goes_away_fails_every_call_in_flight_with_channel_closed():
    never = asyncio.Event()

    async def hang(payload: bytes) -> bytes:
        await never.wait()
        return payload

    server = await _server(hang=hang)
    channel = await Channel.connect(server.endpoint)
    pending = [channel.call("hang", b"") for _ in range(5)]
    await asyncio.sleep(0.05)
    await server.close()
    for fut in pending:
        with pytest.raises(ChannelClosed):
            await asyncio.wait_for(fut, 5)
    assert channel.closed
    with pytest.raises(ChannelClosed):
        await channel.call("hang", b"")


async def test_an_oversized_frame_drops_the_connection_without_reading_it():
    async def echo(payload: bytes) -> bytes:
        return payload

    server = await _server(echo=echo)
    address, port, secret = server.endpoint
    reader, writer = await asyncio.open_connection(address, port)
    try:
        writer.write(len(secret).to_bytes(4, "big") + secret)
        writer.write((MAX_FRAME_BYTES + 1).to_bytes(4, "big"))
        await writer.drain()
        assert await asyncio.wait_for(reader.read(), 5) == b"", "the host closed the connection"
    finally:
        writer.close()
        await server.close()


async def test_a_link_connects_once_for_concurrent_callers_and_finds_a_restarted_host():
    async def echo(payload: bytes) -> bytes:
        return payload

    servers = [await _server(echo=echo)]
    resolved = []

    async def resolve():
        resolved.append(servers[-1].endpoint)
        await asyncio.sleep(0.01)
        return servers[-1].endpoint

    link = Link(resolve)
    assert await asyncio.gather(*(link.call("echo", bytes([i])) for i in range(20))) == \
        [bytes([i]) for i in range(20)]
    assert len(resolved) == 1, "one connection for all the callers"

    # the host dies and comes back elsewhere (a new port, a new secret)
    await servers[0].close()
    servers.append(await _server(echo=echo))
    await asyncio.sleep(0.05)              # the loss reaches the caller: the channel is closed
    assert await link.call("echo", b"again") == b"again"
    assert len(resolved) == 2
    assert resolved[-1] == servers[-1].endpoint and servers[-1].endpoint != servers[0].endpoint
    link.close()
    await servers[-1].close()


def test_the_transport_is_the_channel_unless_ray_is_asked_for(monkeypatch):
    from actors.channel import TRANSPORT_ENV, RayLink, host_link, transport

    monkeypatch.delenv(TRANSPORT_ENV, raising=False)
    assert transport() == "channel" and isinstance(host_link(lambda: None), Link)
    monkeypatch.setenv(TRANSPORT_ENV, "ray")
    assert transport() == "ray" and isinstance(host_link(lambda: None), RayLink)
    monkeypatch.setenv(TRANSPORT_ENV, "carrier-pigeon")
    with pytest.raises(ValueError, match="channel or ray"):
        transport()


async def test_the_ray_fallback_finds_its_actor_once_and_names_its_packed_method():
    from actors.channel import RayLink

    calls, found = [], []

    class Method:
        def __init__(self, name):
            self.name = name

        def remote(self, payload):
            calls.append((self.name, payload))
            fut = asyncio.get_running_loop().create_future()
            fut.set_result(b"ok")
            return fut

    class Actor:
        def __getattr__(self, name):
            return Method(name)

    def handle():
        found.append(1)
        return Actor()

    link = RayLink(handle)
    assert [await link.call("apply", b"x"), await link.call("execute", b"y")] == [b"ok", b"ok"]
    assert calls == [("apply_packed", b"x"), ("execute_packed", b"y")] and len(found) == 1


def test_actors_started_from_here_are_told_the_transport_only_when_it_was_asked_for(monkeypatch):
    from actors.channel import TRANSPORT_ENV, transport_env

    monkeypatch.delenv(TRANSPORT_ENV, raising=False)
    assert transport_env() == {}
    monkeypatch.setenv(TRANSPORT_ENV, "ray")
    assert transport_env() == {TRANSPORT_ENV: "ray"}


def test_a_connected_link_can_be_dropped_outside_any_event_loop():
    async def connected() -> Link:
        async def echo(payload: bytes) -> bytes:
            return payload

        server = await _server(echo=echo)

        async def resolve():
            return server.endpoint
        link = Link(resolve)
        assert await link.call("echo", b"hi") == b"hi"
        await server.close()
        return link

    link = asyncio.run(connected())     # its loop is gone; Gateway.forget() may run from plain code
    link.close()
    assert link._channel is None


async def test_calls_given_up_on_do_not_pile_up_while_the_host_never_answers_them(monkeypatch):
    import actors.channel as channel_module

    monkeypatch.setattr(channel_module, "PENDING_SWEEP_MIN", 8)
    never = asyncio.Event()

    async def hang(payload: bytes) -> bytes:
        await never.wait()
        return payload

    async def echo(payload: bytes) -> bytes:
        return payload

    server = await _server(hang=hang, echo=echo)
    channel = await Channel.connect(server.endpoint)
    try:
        live = channel.call("hang", b"kept")            # in flight, not given up on
        for _ in range(100):
            channel.call("hang", b"").cancel()          # what the batcher's timeout does
        assert len(channel._pending) <= 16, "abandoned calls are swept as the table grows"
        assert any(f is live for f in channel._pending.values())
        assert await channel.call("echo", b"ok") == b"ok"
        never.set()
        assert await live == b"kept"
    finally:
        channel.close()
        await server.close()
