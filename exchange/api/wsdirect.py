"""Writing WebSocket frames straight to a connection's transport.

A fanned-out market change is one text for every subscriber. Through the ASGI
``websocket.send`` path each copy is framed again and goes through a writer task: with
1,000 subscribers that is 1,000 task wake-ups and 1,000 framings per change, most of a
replica's loop. When the replica's server is uvicorn's websockets protocol on this
event loop (Serve's direct ingress: the HAProxy edge), ``DirectSocket`` writes a frame
built once for all subscribers to each transport, synchronously. Anything else (Serve's
Python proxy, another server, user code on another thread's loop) finds no protocol and
keeps the ASGI path.

Frames are unmasked (server to client) and never compressed: a server may send any
message uncompressed even when permessage-deflate was negotiated (RFC 7692 section 6),
and it leaves the compressor's context alone.
"""

from __future__ import annotations

import asyncio
import struct

MAX_SEARCH_DEPTH = 4


def text_frame(payload: bytes) -> bytes:
    """One final text frame (RFC 6455 section 5.2): FIN + opcode 1, no mask."""
    n = len(payload)
    if n < 126:
        return bytes((0x81, n)) + payload
    if n < 65536:
        return struct.pack("!BBH", 0x81, 126, n) + payload
    return struct.pack("!BBQ", 0x81, 127, n) + payload


def _is_protocol(obj) -> bool:
    return (hasattr(obj, "transport") and hasattr(obj, "writable") and hasattr(obj, "conn")
            and hasattr(obj, "close_sent") and hasattr(obj, "disconnected"))


def find_protocol(send, depth: int = MAX_SEARCH_DEPTH):
    """uvicorn's websockets protocol behind an ASGI send callable, or None.

    Follows bound methods and closures (Starlette's WebSocket keeps the callable it was
    given; Serve's direct ingress wraps the protocol's ``send`` in a closure).
    """
    if send is None or depth < 0:
        return None
    owner = getattr(send, "__self__", None)
    if owner is not None and _is_protocol(owner):
        return owner
    for cell in getattr(send, "__closure__", None) or ():
        try:
            inner = cell.cell_contents
        except ValueError:          # an empty cell
            continue
        if callable(inner):
            found = find_protocol(inner, depth - 1)
            if found is not None:
                return found
    return None


class DirectSocket:
    """Synchronous frame writes to one accepted WebSocket (see the module docstring)."""

    __slots__ = ("protocol", "transport")

    def __init__(self, protocol):
        self.protocol = protocol
        self.transport = protocol.transport

    @classmethod
    def of(cls, websocket) -> "DirectSocket | None":
        protocol = find_protocol(getattr(websocket, "_send", None))
        if protocol is None or getattr(protocol, "handshake_complete", False) is not True:
            return None
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return None
        if getattr(protocol, "loop", loop) is not loop:
            return None              # the server runs on another thread's loop: not ours to write
        return cls(protocol)

    def ready(self) -> bool:
        """True when a frame written now goes out in order: open, not paused for backpressure."""
        p = self.protocol
        return p.writable.is_set() and not p.close_sent and not p.disconnected and not self.transport.is_closing()

    def write(self, frame: bytes) -> None:
        self.transport.write(frame)
