"""Creating a jurisdiction's hosts on the Ray cluster.

Owns the one place where host actors are created: named, detached, restartable, and
placed by the jurisdiction label (never by site alone), so that a regulated host never
runs outside its jurisdiction's nodes.
"""

from __future__ import annotations

import ray

from actors.directory import host_name
from actors.gateway import Hosts
from actors.market_host import MarketHost
from actors.wallet_host import WalletHost

JURISDICTION_LABEL = "exchange/jurisdiction"


def host_options(kind: str, jurisdiction: str, index: int, namespace: str) -> dict:
    return {
        "name": host_name(kind, jurisdiction, index),
        "namespace": namespace,
        "lifetime": "detached",
        "get_if_exists": True,
        "max_restarts": -1,
        "max_task_retries": 0,
        "max_concurrency": 10_000,
        "num_cpus": 0,
        "label_selector": {JURISDICTION_LABEL: jurisdiction},
    }


def deploy_hosts(jurisdiction: str, bootstrap: str, market_hosts: int = 1, wallet_hosts: int = 1,
                 namespace: str = "exchange", prefix: str = "exchange", partitions: int = 8,
                 reservation_ttl_ms: int | None = None, timeout: float = 120) -> Hosts:
    """Creates (or finds) the hosts and waits until each has recovered from Kafka."""
    market_cls = ray.remote(MarketHost)
    wallet_cls = ray.remote(WalletHost)
    actors = []
    for i in range(market_hosts):
        actors.append(market_cls.options(**host_options("market", jurisdiction, i, namespace)).remote(
            jurisdiction, i, bootstrap, wallet_hosts, namespace, partitions, prefix))
    wallet_kwargs = {} if reservation_ttl_ms is None else {"reservation_ttl_ms": reservation_ttl_ms}
    for i in range(wallet_hosts):
        actors.append(wallet_cls.options(**host_options("wallet", jurisdiction, i, namespace)).remote(
            jurisdiction, i, bootstrap, market_hosts, namespace, partitions, prefix, **wallet_kwargs))
    ray.get([a.ready.remote() for a in actors], timeout=timeout)
    return Hosts(jurisdiction, market_hosts, wallet_hosts, namespace)


def remove_hosts(hosts: Hosts) -> None:
    for kind, count in (("market", hosts.market_hosts), ("wallet", hosts.wallet_hosts)):
        for i in range(count):
            try:
                ray.kill(ray.get_actor(host_name(kind, hosts.jurisdiction, i), namespace=hosts.namespace),
                         no_restart=True)
            except ValueError:
                pass
