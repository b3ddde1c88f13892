"""Journal records as they sit in Kafka (msgpack via msgspec).

Owns the byte layout of the events and snapshot topics; knows nothing of markets or
wallets: an event is an opaque, already-encoded msgpack value (msgspec.Raw) that the
aggregate's own codec wrote. Schema rule: new fields go at the end with defaults.
"""

from __future__ import annotations

import msgspec


class EventBatch(msgspec.Struct, frozen=True, array_like=True, gc=False):
    """All of one aggregate's events from one group commit, in order.

    The events carry sequence numbers first_seq, first_seq + 1, ... A record with a
    first_seq at or below what recovery already holds is a duplicate and is skipped;
    one above the next expected seq is a gap and stops recovery (crash-only).
    """

    aggregate_id: str
    first_seq: int
    events: list[msgspec.Raw]


class Snapshot(msgspec.Struct, frozen=True, array_like=True, gc=False):
    """An aggregate's whole state after its event number `seq` (state is the aggregate's msgpack)."""

    aggregate_id: str
    seq: int
    state: msgspec.Raw


class Checkpoint(msgspec.Struct, frozen=True, array_like=True, gc=False):
    """Every aggregate whose events sit at or below `events_offset` of the host's events
    partition has a snapshot written at or before this checkpoint: recovery starts
    reading events just after it."""

    events_offset: int
    written_ms: int


CHECKPOINT_KEY = b"\x00checkpoint"

batch_encoder = msgspec.msgpack.Encoder()
# An events record holds the EventBatches of several aggregates (one group commit, or
# a slice of it): the per-record cost of a Kafka produce is paid once per slice.
batch_decoder = msgspec.msgpack.Decoder(list[EventBatch])
snapshot_decoder = msgspec.msgpack.Decoder(Snapshot)
checkpoint_decoder = msgspec.msgpack.Decoder(Checkpoint)
