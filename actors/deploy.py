"""Creating a jurisdiction's hosts on the Ray cluster.

Owns the one place where host actors are created: named, detached, restartable, placed
by placement/ (label selector on the jurisdiction, inside a placement group whose
bundles are bound to the nodes the jurisdiction's scenario allows), so that a regulated
host never runs outside its jurisdiction's nodes and waits for them when they are lost.
"""

from __future__ import annotations

import os

import ray

from placement import Role, actor_options, host_placement_group, load_topology
from placement.options import host_placement_group_name

from actors.channel import transport_env
from actors.gateway import Hosts
from actors.market_host import MarketHost
from actors.wallet_host import WalletHost

HOST_CPU = 0.01          # a host is mostly waiting on Kafka; the bundle only pins it


def deploy_hosts(jurisdiction: str, bootstrap: str, market_hosts: int = 1, wallet_hosts: int = 1,
                 namespace: str = "exchange", prefix: str = "exchange", partitions: int = 8,
                 reservation_ttl_ms: int | None = None, timeout: float = 120,
                 topology=None, scenario: str | None = None, journal_linger_ms: float = 0.0) -> Hosts:
    """Creates (or finds) the hosts and waits until each has recovered from Kafka."""
    topology = topology or load_topology()
    n = market_hosts + wallet_hosts
    group_name = f"{namespace}/{host_placement_group_name(jurisdiction)}"
    try:   # idempotent: a second deploy (or a builder re-run) finds the group
        group = ray.util.get_placement_group(group_name)
    except ValueError:
        group = host_placement_group(jurisdiction, n, topology, scenario=scenario, bundle={"CPU": HOST_CPU},
                                     name=group_name, detached=True)
    ray.get(group.ready(), timeout=timeout)

    def options(role: Role, index: int, bundle: int) -> dict:
        opts = actor_options(role, jurisdiction, topology, instance=index, scenario=scenario,
                             namespace=namespace, detached=True, placement_group=group,
                             bundle_index=bundle)
        opts = {**opts, "get_if_exists": True, "max_concurrency": 10_000, "num_cpus": HOST_CPU}
        asked = {**transport_env(), **host_priority_env()}
        if asked:   # the hosts call each other and are scheduled the way the deployer asks
            env = dict(opts.get("runtime_env") or {})
            env["env_vars"] = {**env.get("env_vars", {}), **asked}
            opts["runtime_env"] = env
        return opts

    actors = []
    market_cls, wallet_cls = ray.remote(MarketHost), ray.remote(WalletHost)
    for i in range(market_hosts):
        actors.append(market_cls.options(**options(Role.MARKET_HOST, i, i)).remote(
            jurisdiction, i, bootstrap, wallet_hosts, namespace, partitions, prefix,
            linger_ms=journal_linger_ms))
    wallet_kwargs = {} if reservation_ttl_ms is None else {"reservation_ttl_ms": reservation_ttl_ms}
    for i in range(wallet_hosts):
        actors.append(wallet_cls.options(**options(Role.WALLET_HOST, i, market_hosts + i)).remote(
            jurisdiction, i, bootstrap, market_hosts, namespace, partitions, prefix,
            linger_ms=journal_linger_ms, **wallet_kwargs))
    ray.get([a.ready.remote() for a in actors], timeout=timeout)
    return Hosts(jurisdiction, market_hosts, wallet_hosts, namespace)


def host_priority_env() -> dict[str, str]:
    """The hosts' scheduling settings (actors/host_actor.py) the deployer's environment sets."""
    return {k: os.environ[k] for k in ("EXCHANGE_HOST_NICENESS", "EXCHANGE_HOST_REALTIME") if k in os.environ}


def remove_hosts(hosts: Hosts) -> None:
    """Kills the hosts (their state stays in Kafka) and frees their placement group."""
    from actors.directory import host_name
    from ray.util import get_placement_group, remove_placement_group

    for kind, count in (("market", hosts.market_hosts), ("wallet", hosts.wallet_hosts)):
        for i in range(count):
            try:
                ray.kill(ray.get_actor(host_name(kind, hosts.jurisdiction, i), namespace=hosts.namespace),
                         no_restart=True)
            except ValueError:
                pass
    try:
        remove_placement_group(get_placement_group(
            f"{hosts.namespace}/{host_placement_group_name(hosts.jurisdiction)}"))
    except ValueError:
        pass
