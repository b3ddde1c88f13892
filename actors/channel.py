"""Direct calls to a host over one TCP connection: the hot path into and between hosts.

Owns the byte transport of the batched host calls (execute, apply). A Ray actor call
costs ~0.6 ms of CPU in the caller and ~0.7 ms in the callee on these machines, and a
placement makes three of them (reserve, place, the exposure report); at half load,
where batches are small, that was most of the two cores. So each host also listens on
a TCP port of its node for the same msgpack batches its Ray methods take: length-
prefixed frames over one persistent connection per caller and event loop, many calls
in flight at once, each reply matched to its call by id.

Ray still creates, places, names and restarts the hosts and carries every other call.
A caller finds a host's address through Ray (`HostActor.endpoint`), with a secret
drawn by that incarnation of the host: a connection must present it first, so only a
caller that Ray lets reach the actor can call it, and a restarted host (a new process,
a new port, a new secret) is found again through Ray.

Failure: a connection that drops (the host died, its node was lost) fails every call in
flight on it with ChannelClosed; callers treat that as they treat RayActorError, the
host being away with the outcome unknown. A handler that raises answers RemoteError.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import os
import secrets
import struct
from typing import Awaitable, Callable

import msgspec

log = logging.getLogger(__name__)

_LENGTH = struct.Struct("!I")
MAX_FRAME_BYTES = 256 * 1024 * 1024
TRANSPORT_ENV = "EXCHANGE_HOST_TRANSPORT"
PENDING_SWEEP_MIN = 4096     # calls in flight on one channel before it looks for abandoned ones
_encode = msgspec.msgpack.encode
_call_decoder = msgspec.msgpack.Decoder(tuple[int, str, bytes])
_reply_decoder = msgspec.msgpack.Decoder(tuple[int, bool, bytes])


class ChannelClosed(ConnectionError):
    """The connection to the host is gone: a call in flight on it has an unknown outcome."""


class RemoteError(RuntimeError):
    """The host's handler raised (its type and message are in the text)."""


Endpoint = tuple[str, int, bytes]     # (address, port, secret)
Handler = Callable[[bytes], Awaitable[bytes]]


async def _read_frame(reader: asyncio.StreamReader) -> bytes:
    (n,) = _LENGTH.unpack(await reader.readexactly(4))
    if n > MAX_FRAME_BYTES:
        raise ValueError(f"frame of {n} bytes")
    return await reader.readexactly(n)


def _frame(body: bytes) -> bytes:
    return _LENGTH.pack(len(body)) + body


class ChannelServer:
    """A host's listener: runs `handlers[method](payload)` for each call, concurrently."""

    def __init__(self, handlers: dict[str, Handler], address: str = "127.0.0.1"):
        self.handlers = handlers
        self.address = address
        self.secret = secrets.token_bytes(16)
        self.port = 0
        self._server: asyncio.base_events.Server | None = None
        self._tasks: set[asyncio.Task] = set()
        self._connections: set[asyncio.Task] = set()

    async def start(self) -> Endpoint:
        self._server = await asyncio.start_server(self._serve, self.address, 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self.endpoint

    @property
    def endpoint(self) -> Endpoint:
        return (self.address, self.port, self.secret)

    async def close(self) -> None:
        """Stops listening and drops every connection (calls in flight get no reply)."""
        if self._server is not None:
            self._server.close()
        for task in list(self._connections) + list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._connections, *self._tasks, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        me = asyncio.current_task()
        self._connections.add(me)
        try:
            hello = await asyncio.wait_for(_read_frame(reader), 10)
            if not hmac.compare_digest(hello, self.secret):
                log.warning("channel: a connection from %s without the secret", writer.get_extra_info("peername"))
                return
            while True:
                call_id, method, payload = _call_decoder.decode(await _read_frame(reader))
                task = asyncio.get_running_loop().create_task(self._one(writer, call_id, method, payload))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.TimeoutError, asyncio.CancelledError):
            pass            # the caller went away (or never said hello), or the server closes
        except Exception:
            log.warning("channel: dropping a connection", exc_info=True)
        finally:
            self._connections.discard(me)
            writer.close()

    async def _one(self, writer: asyncio.StreamWriter, call_id: int, method: str, payload: bytes) -> None:
        try:
            handler = self.handlers.get(method)
            if handler is None:
                raise KeyError(f"no method {method!r}")
            reply = _encode((call_id, True, await handler(payload)))
        except Exception as exc:
            reply = _encode((call_id, False, f"{type(exc).__name__}: {exc}".encode()))
        if not writer.is_closing():
            writer.write(_frame(reply))


class Channel:
    """One caller's connection to one host; any number of calls in flight."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self._reader = reader
        self._writer = writer
        self._next_id = 0
        self._pending: dict[int, asyncio.Future] = {}
        # a call its caller gave up on (cancelled: the batcher's timeout) stays in _pending
        # until its reply comes; a host that never answers it would grow the table, so
        # it is swept of finished calls whenever it doubles (one compare per call)
        self._sweep_at = PENDING_SWEEP_MIN
        self.loop = asyncio.get_running_loop()
        self.closed = False
        self._reading = self.loop.create_task(self._read_replies())

    @classmethod
    async def connect(cls, endpoint: Endpoint, timeout_s: float = 5.0) -> "Channel":
        address, port, secret = endpoint
        reader, writer = await asyncio.wait_for(asyncio.open_connection(address, port), timeout_s)
        writer.write(_frame(secret))
        return cls(reader, writer)

    def call(self, method: str, payload: bytes) -> asyncio.Future:
        """The reply's bytes, as a future (ChannelClosed if the connection goes first)."""
        fut = self.loop.create_future()
        if self.closed:
            fut.set_exception(ChannelClosed("channel closed"))
            return fut
        self._next_id += 1
        pending = self._pending
        if len(pending) >= self._sweep_at:
            pending = self._pending = {k: f for k, f in pending.items() if not f.done()}
            self._sweep_at = max(PENDING_SWEEP_MIN, 2 * len(pending))
        pending[self._next_id] = fut
        self._writer.write(_frame(_encode((self._next_id, method, payload))))
        return fut

    async def _read_replies(self) -> None:
        why: BaseException = ChannelClosed("the host closed the connection")
        try:
            while True:
                call_id, ok, body = _reply_decoder.decode(await _read_frame(self._reader))
                fut = self._pending.pop(call_id, None)
                if fut is None or fut.done():
                    continue
                if ok:
                    fut.set_result(body)
                else:
                    fut.set_exception(RemoteError(body.decode()))
        except (asyncio.IncompleteReadError, ConnectionError) as exc:
            why = ChannelClosed(f"connection lost: {exc!r}")
        except asyncio.CancelledError:
            why = ChannelClosed("channel closed")
        except Exception as exc:
            why = ChannelClosed(f"bad reply: {exc!r}")
        finally:
            self._shut(why)

    def _shut(self, why: BaseException) -> None:
        self.closed = True
        self._writer.close()
        pending, self._pending = self._pending, {}
        for fut in pending.values():
            if not fut.done():
                fut.set_exception(why)

    def close(self) -> None:
        self._reading.cancel()
        self._shut(ChannelClosed("channel closed"))


class Link:
    """A caller's channel to one host, connected on first use and again after a loss.

    `resolve` finds the host's current endpoint (through Ray); a call that finds the
    channel closed resolves and connects again, once for all calls waiting on it.
    """

    def __init__(self, resolve: Callable[[], Awaitable[Endpoint]], timeout_s: float = 5.0):
        self.resolve = resolve
        self.timeout_s = timeout_s
        self._channel: Channel | None = None
        self._connecting: asyncio.Future | None = None

    def call(self, method: str, payload: bytes) -> Awaitable[bytes]:
        """The reply's bytes: the channel's future itself when connected (no task, no extra
        loop turn), else a coroutine that connects first."""
        channel = self._channel
        if channel is not None and not channel.closed and channel.loop is asyncio.get_running_loop():
            return channel.call(method, payload)
        return self._call_connecting(method, payload)

    async def _call_connecting(self, method: str, payload: bytes) -> bytes:
        channel = await self._connect()
        return await channel.call(method, payload)

    async def _connect(self) -> Channel:
        loop = asyncio.get_running_loop()
        if self._connecting is None or self._connecting.get_loop() is not loop:
            self._connecting = loop.create_task(self._open())
        try:
            return await asyncio.shield(self._connecting)
        finally:
            if self._connecting is not None and self._connecting.done():
                self._connecting = None

    async def _open(self) -> Channel:
        endpoint = await asyncio.wait_for(self.resolve(), self.timeout_s)
        channel = await Channel.connect(tuple(endpoint), self.timeout_s)
        old, self._channel = self._channel, channel
        if old is not None and not old.closed and old.loop is channel.loop:
            old.close()
        return channel

    def close(self) -> None:
        """Drops the channel (closing it when called on its own loop)."""
        if self._channel is not None and self._channel.loop is _running_loop():
            self._channel.close()
        self._channel = None


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:        # called from plain code (Gateway.forget outside a loop)
        return None


class RayLink:
    """The fallback: the same calls as Ray actor calls (`<method>_packed`), where a
    network lets only Ray's ports through (EXCHANGE_HOST_TRANSPORT=ray)."""

    def __init__(self, handle: Callable[[], object]):
        self.handle = handle
        self._actor = None      # found once: a lookup per call would ask Ray's GCS each time

    async def call(self, method: str, payload: bytes) -> bytes:
        if self._actor is None:
            self._actor = self.handle()
        return await getattr(self._actor, f"{method}_packed").remote(payload)

    def close(self) -> None:
        pass


class LocalLink:
    """A host object in this process, called directly with the same payloads (tests, and the
    in-process benchmark `python -m exchange.bench hostcpu`): no socket, no Ray."""

    def __init__(self, host):
        self.host = host

    async def call(self, method: str, payload: bytes) -> bytes:
        return await getattr(self.host, f"{method}_packed")(payload)

    def close(self) -> None:
        pass


def transport() -> str:
    """How callers reach the hosts' batched methods: "channel" (default) or "ray"."""
    value = os.environ.get(TRANSPORT_ENV, "channel")
    if value not in ("channel", "ray"):
        raise ValueError(f"{TRANSPORT_ENV}={value!r}: channel or ray")
    return value


def transport_env() -> dict[str, str]:
    """The env var that makes an actor started from here (hosts, Serve replicas) call the
    hosts the way this process was asked to; empty when it was not asked."""
    return {TRANSPORT_ENV: transport()} if os.environ.get(TRANSPORT_ENV) else {}


def host_link(handle: Callable[[], object], timeout_s: float = 5.0) -> Link | RayLink:
    """A link to the host actor that `handle()` returns (a Ray actor handle): a channel
    whose endpoint is asked through Ray each time it connects, or Ray calls themselves
    when EXCHANGE_HOST_TRANSPORT=ray."""
    if transport() == "ray":
        return RayLink(handle)

    async def resolve() -> Endpoint:
        return await handle().endpoint.remote()
    return Link(resolve, timeout_s)
