"""The history projector as a Ray actor: one per jurisdiction, in the jurisdiction.

Owns the Ray side of exchange/history/projector.py: creating the actor once per
jurisdiction (named `replica/<jurisdiction>/history`, detached, restartable), running the
projector from the actor's start (not from a first call: after Ray restarts it, nobody
needs to call it for the projection to go on), and the few calls tests and operators
make (ready, stats, lag, wait_caught_up).

Placement: role REPLICA (placement/policy.py). The history is the jurisdiction's
regulated record of bets and money: like the jurisdiction's replica of its data it runs
on the jurisdiction's own nodes in every scenario (A, B and C), selected by the
jurisdiction label, and waits for them when they are lost; it never moves into the
Region. (The Region's analytics copy is MirrorMaker 2's job, not this actor's.)

The projector runs on its own event loop in a thread of the actor process, so the
actor's methods stay plain and never share a loop with Ray's. A projector that cannot
go on (its thread ends) exits the process: Ray restarts the actor, which restarts the
projection from PostgreSQL (crash-only).
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading

import ray

from placement import Role, actor_options, load_topology

log = logging.getLogger(__name__)

PROJECTOR_CPU = 0.01          # mostly waiting on Kafka and PostgreSQL
INSTANCE = "history"


class HistoryProjectorActor:
    def __init__(self, jurisdiction: str, bootstrap: str, dsn: str, schema: str = "platform",
                 prefix: str = "exchange", partitions: int = 8):
        from exchange.history.projector import HistoryProjector

        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
        self.jurisdiction = jurisdiction
        self.loop = asyncio.new_event_loop()
        self.projector = HistoryProjector(bootstrap, dsn, jurisdiction, schema=schema, prefix=prefix,
                                          partitions=partitions)
        self.thread = threading.Thread(target=self._run, name=f"history-projector/{jurisdiction}", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        try:
            self.loop.run_until_complete(self.projector.run())
        except BaseException as exc:       # the projector never returns: this is a crash
            log.error("history projector %s exits: %r", self.jurisdiction, exc)
            logging.shutdown()
            os._exit(1)

    def _call(self, coro, timeout: float):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def ready(self, timeout: float = 120.0) -> dict:
        """Waits until the projector has loaded its state and tails the journals."""
        self._call(asyncio.wait_for(self.projector.ready.wait(), timeout), timeout + 5)
        return self.stats()

    def stats(self) -> dict:
        s = self.projector.stats
        return {"jurisdiction": self.jurisdiction, "pid": os.getpid(), "batches": s.batches, "events": s.events,
                "skipped": s.skipped, "cleared": s.cleared, "items": s.items, "gaps": s.gaps,
                "restarts": s.restarts, "node_id": ray.get_runtime_context().get_node_id()}

    def lag(self) -> int:
        return self._call(self.projector.lag(), 30)

    def wait_caught_up(self, timeout: float = 60.0) -> dict:
        """Waits until everything committed to the journals now is in PostgreSQL."""
        self._call(self.projector.wait_caught_up(timeout), timeout + 5)
        return self.stats()


def projector_name(jurisdiction: str) -> str:
    from placement import actor_name

    return actor_name(Role.REPLICA, jurisdiction, INSTANCE)


def ensure_projector(jurisdiction: str, bootstrap: str, dsn: str, schema: str = "platform",
                     namespace: str = "exchange", prefix: str = "exchange", partitions: int = 8,
                     timeout: float = 120, topology=None, scenario: str | None = None):
    """Creates (or finds) the jurisdiction's history projector and waits until it is tailing."""
    topology = topology or load_topology()
    opts = actor_options(Role.REPLICA, jurisdiction, topology, instance=INSTANCE, scenario=scenario,
                         namespace=namespace, detached=True)
    actor = ray.remote(HistoryProjectorActor).options(
        **opts, get_if_exists=True, max_concurrency=8, num_cpus=PROJECTOR_CPU).remote(
        jurisdiction, bootstrap, dsn, schema, prefix, partitions)
    ray.get(actor.ready.remote(), timeout=timeout)
    return actor


def remove_projector(jurisdiction: str, namespace: str = "exchange", timeout: float = 30) -> None:
    """Kills the projector and waits until it is gone (its positions and rows stay in
    PostgreSQL; a caller may drop its schema next without the projector making it again)."""
    import time

    try:
        actor = ray.get_actor(projector_name(jurisdiction), namespace=namespace)
    except ValueError:
        return
    ray.kill(actor, no_restart=True)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:        # a dead actor's name is released
        try:
            ray.get_actor(projector_name(jurisdiction), namespace=namespace)
        except ValueError:
            return
        time.sleep(0.1)
