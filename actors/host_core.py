"""The heart of a host actor: many aggregates, one journal, recover -> handle -> persist.

Owns the in-memory aggregates of one host (markets or wallets), their journal and their
recovery. It is plain asyncio, not a Ray actor, so it can be driven in-process; the Ray
actors in actors/market_host.py and actors/wallet_host.py wrap it.

Order of work for a command: the pure domain `handle` decides and evolves the aggregate
(synchronously, no await in between, so each aggregate handles one command at a time
and sees every earlier command's effects), its events go to the journal's next group
commit, and the caller awaits that commit before it answers anyone. If a commit fails,
the journal fails for good and the host must exit: its memory ran ahead of Kafka, and
only a replay can bring it back (crash-only). Nobody was answered about the lost part.

Snapshots are pickles of the domain state (an internal format of this code version,
never a wire type); one that does not load makes recovery replay that aggregate's
whole history instead.
"""

from __future__ import annotations

import logging
import pickle
import time
from dataclasses import dataclass
from typing import Any, Callable

import msgspec

from exchange.domain.context import Context
from exchange.domain.messages import CommandResult, event_msgpack
from exchange.journal import Journal, JournalConfig, JournalFailed, ensure_topics, read_partition

log = logging.getLogger(__name__)

_event_encoder = msgspec.msgpack.Encoder()


@dataclass(frozen=True)
class AggregateKind:
    """How a host handles one kind of aggregate (the domain's pure functions)."""

    stream: str                                   # "markets" / "wallets"
    aggregate_id: Callable[[Any], str]            # command -> aggregate id
    handle: Callable[[Any, Any, Context], tuple]  # (state, command, ctx) -> (state, CommandResult)
    evolve: Callable[[Any, Any], Any]             # (state, event) -> state


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def rebuild(kind: AggregateKind, recovered: dict) -> tuple[dict[str, Any], int, list[str]]:
    """States from recovered snapshots + events; also the ids whose snapshot did not load."""
    decode = event_msgpack.decode
    evolve = kind.evolve
    states: dict[str, Any] = {}
    replayed = 0
    unreadable = []
    for agg in recovered.values():
        state = None
        if agg.snapshot is not None:
            try:
                state = pickle.loads(msgspec.msgpack.decode(agg.snapshot))
            except Exception:  # a snapshot of an older code version: replay instead
                unreadable.append(agg.aggregate_id)
                continue
        for raw in agg.events:
            state = evolve(state, decode(raw))
        replayed += len(agg.events)
        if state is not None:
            states[agg.aggregate_id] = state
    return states, replayed, unreadable


async def replay_log(kind: AggregateKind, config: JournalConfig, partition: int) -> dict[str, Any]:
    """A host partition's aggregates rebuilt from Kafka alone, fencing nobody (tests, tools)."""
    states, _, unreadable = rebuild(kind, await read_partition(config, partition))
    if unreadable:
        raise RuntimeError(f"snapshots that do not load: {unreadable[:5]}")
    return states


class HostCore:
    def __init__(self, kind: AggregateKind, config: JournalConfig, partition: int,
                 clock: Callable[[], int] = now_ms):
        self.kind = kind
        self.config = config
        self.partition = partition
        self.clock = clock
        self.states: dict[str, Any] = {}
        self.journal = Journal(config, partition, snapshot_source=self._snapshots)
        self.recovered_events = 0
        self.recovery_s = 0.0
        self.commands = 0

    async def start(self) -> None:
        """Fences any predecessor, then rebuilds every aggregate from snapshot + events."""
        started = time.perf_counter()
        await ensure_topics(self.config)
        await self.journal.start()
        recovered = await self.journal.recover()
        self.states, self.recovered_events, replay_from_zero = rebuild(self.kind, recovered)
        if replay_from_zero:
            await self._replay_whole(set(replay_from_zero))
        self.recovery_s = time.perf_counter() - started
        log.info("%s recovered %d aggregates, %d events in %.2fs", self.journal.host_id,
                 len(self.states), self.recovered_events, self.recovery_s)

    async def _replay_whole(self, aggregate_ids: set[str]) -> None:
        decode = event_msgpack.decode
        from exchange.journal.records import batch_decoder
        rebuilt: dict[str, Any] = {}
        async for _, value, _ in self.journal._read(self.config.events_topic, 0):
            for batch in batch_decoder.decode(value):
                if batch.aggregate_id in aggregate_ids:
                    state = rebuilt.get(batch.aggregate_id)
                    for raw in batch.events:
                        state = self.kind.evolve(state, decode(raw))
                    rebuilt[batch.aggregate_id] = state
        self.states.update(rebuilt)

    async def stop(self) -> None:
        await self.journal.stop()

    def _snapshots(self, aggregate_ids) -> dict[str, tuple[int, bytes]]:
        out = {}
        for agg in aggregate_ids:
            state = self.states.get(agg)
            if state is not None:
                payload = msgspec.msgpack.encode(pickle.dumps(state, protocol=pickle.HIGHEST_PROTOCOL))
                out[agg] = (self.journal.next_seq(agg) - 1, payload)
        return out

    async def execute(self, commands: list, within_s: float = 0.0) -> list[CommandResult]:
        """Decides and applies each command of a batch in order (the domain's `handle`,
        no await in between), queues its events for the journal's next group commit, and
        returns the results only once all of them are committed: nobody may see a result
        before. This loop is most of a host's CPU per order. ``within_s``: the events may
        wait that long for a flush something else starts (Journal.append)."""
        results, last = [], None
        ctx = Context(self.clock())
        decide, aggregate_id, states = self.kind.handle, self.kind.aggregate_id, self.states
        append, encode = self.journal.append, _event_encoder.encode
        for command in commands:
            agg = aggregate_id(command)
            state, result = decide(states.get(agg), command, ctx)
            if state is not None:
                states[agg] = state
            if result.events:
                last = append(agg, [encode(e) for e in result.events], within_s)
            results.append(result)
        self.commands += len(commands)
        if last is not None:
            await last   # flushes commit in order: the last one covers all before it
        return results


__all__ = ["AggregateKind", "HostCore", "JournalFailed", "now_ms"]
