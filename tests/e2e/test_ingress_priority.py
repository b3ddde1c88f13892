"""The ingress replica runs at the niceness its app asks for (Settings.niceness), every
thread of it: Ray started them at 15 before the replica's constructor ran."""

from __future__ import annotations

from actors.priority import thread_niceness
from tests.e2e.conftest import INGRESS_NICENESS


def test_every_thread_of_the_replica_runs_at_the_apps_niceness(api_app, new_client):
    from ray.util.state import list_actors

    assert new_client().http.get("/health").status_code == 200     # the replica is up
    replicas = [a for a in list_actors(filters=[("state", "=", "ALIVE")], detail=True, limit=1000)
                if a.class_name.startswith(f"ServeReplica:{api_app['name']}:")]
    assert len(replicas) == 1, [a.class_name for a in replicas]
    assert set(thread_niceness(replicas[0].pid)) == {INGRESS_NICENESS}
