"""Batches between the gateway and the hosts, and between hosts, as msgpack bytes.

Owns the byte layout of host calls. Ray pickles what it carries, and pickling msgspec
Structs one by one was the largest cost of a host call; one msgspec-encoded bytes
object per batch is several times cheaper on both sides. Results travel without
their events (the journal has them; callers need only status and reports).
"""

from __future__ import annotations

import msgspec

from exchange.domain.messages import Command, CommandResult


class HostBatch(msgspec.Struct, frozen=True, array_like=True, gc=False):
    """Commands for one host; a placement's reservation id and deadline go beside it."""

    commands: list[Command]
    reservations: list[str | None] | None = None
    deadlines: list[int | None] | None = None


_encoder = msgspec.msgpack.Encoder()
_batch_decoder = msgspec.msgpack.Decoder(HostBatch)
_results_decoder = msgspec.msgpack.Decoder(list[CommandResult])


def pack_batch(commands: list, reservations: list | None = None, deadlines: list | None = None) -> bytes:
    return _encoder.encode(HostBatch(commands, reservations, deadlines))


def unpack_batch(payload: bytes) -> HostBatch:
    return _batch_decoder.decode(payload)


def pack_results(results: list[CommandResult]) -> bytes:
    return _encoder.encode([r if not r.events else msgspec.structs.replace(r, events=[]) for r in results])


def unpack_results(payload: bytes) -> list[CommandResult]:
    return _results_decoder.decode(payload)
