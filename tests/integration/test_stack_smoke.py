"""Smoke tests against the real local stack: Kafka, PostgreSQL, the DynamoDB API, Ray.

Each test talks to the real service that cluster/stack.py started; nothing is mocked.
"""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import tomllib
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
STACK = [sys.executable, str(ROOT / "cluster" / "stack.py")]


async def test_kafka_idempotent_and_transactional_produce_then_read_committed(stack):
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

    from exchange.journal import create_topic

    bootstrap = stack["env"]["EXCHANGE_KAFKA_BOOTSTRAP"]
    topic = f"smoke-{uuid.uuid4().hex[:8]}"
    await create_topic(bootstrap, topic, partitions=2)

    idempotent = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=True)
    await idempotent.start()
    try:
        meta = await idempotent.send_and_wait(topic, b"plain", key=b"m1")
        assert meta.offset >= 0
    finally:
        await idempotent.stop()

    txn = AIOKafkaProducer(bootstrap_servers=bootstrap, transactional_id=f"smoke-{topic}")
    await txn.start()
    try:
        async with txn.transaction():
            await txn.send(topic, b"committed", key=b"m1")
        await txn.begin_transaction()
        await txn.send(topic, b"aborted", key=b"m1")
        await txn.abort_transaction()
    finally:
        await txn.stop()

    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest",
                                isolation_level="read_committed", enable_auto_commit=False)
    await consumer.start()
    try:
        seen = []
        async with asyncio.timeout(30):
            while len(seen) < 2:
                batch = await consumer.getmany(timeout_ms=1000)
                seen += [r.value for records in batch.values() for r in records]
        assert sorted(seen) == [b"committed", b"plain"]
    finally:
        await consumer.stop()


async def test_postgres_round_trip(stack):
    import asyncpg

    conn = await asyncpg.connect(stack["env"]["EXCHANGE_POSTGRES_DSN"])
    try:
        await conn.execute("CREATE TEMP TABLE smoke (id bigint PRIMARY KEY, amount bigint NOT NULL)")
        await conn.copy_records_to_table("smoke", records=[(1, 1050), (2, -50)])
        total = await conn.fetchval("SELECT sum(amount) FROM smoke")
        assert total == 1000
        assert await conn.fetchval("SHOW wal_level") == "logical"
    finally:
        await conn.close()


def test_dynamodb_table_create_put_get(stack):
    import boto3

    client = boto3.client("dynamodb", endpoint_url=stack["env"]["EXCHANGE_DYNAMODB_ENDPOINT"],
                          region_name="us-east-1", aws_access_key_id="local",
                          aws_secret_access_key="local")
    table = f"smoke-{uuid.uuid4().hex[:8]}"
    client.create_table(TableName=table, BillingMode="PAY_PER_REQUEST",
                        KeySchema=[{"AttributeName": "market_id", "KeyType": "HASH"}],
                        AttributeDefinitions=[{"AttributeName": "market_id", "AttributeType": "S"}])
    client.get_waiter("table_exists").wait(TableName=table, WaiterConfig={"Delay": 1})
    client.put_item(TableName=table, Item={"market_id": {"S": "1.234"}, "best_back": {"N": "250"}})
    item = client.get_item(TableName=table, Key={"market_id": {"S": "1.234"}}, ConsistentRead=True)
    assert item["Item"]["best_back"] == {"N": "250"}
    client.delete_table(TableName=table)


def _topology() -> dict:
    with open(ROOT / "placement" / "topology.toml", "rb") as f:
        return tomllib.load(f)


def test_ray_nodes_carry_the_topology_labels(ray_session):
    ray = ray_session
    topo = _topology()
    keys = topo["labels"]
    alive = [n for n in ray.nodes() if n["Alive"]]
    seen = {(n["Labels"].get(keys["site"]), n["Labels"].get(keys["jurisdiction"])) for n in alive}
    expected = {(n["site"], n["jurisdiction"]) for n in topo["local_nodes"]}
    assert seen == expected


def test_actor_pinned_by_jurisdiction_label_lands_on_that_node(ray_session):
    ray = ray_session
    keys = _topology()["labels"]

    @ray.remote(num_cpus=0)
    class WhereAmI:
        def node_id(self) -> str:
            return ray.get_runtime_context().get_node_id()

    labels_by_node = {n["NodeID"]: n["Labels"] for n in ray.nodes() if n["Alive"]}
    for jurisdiction in ("us-nj", "ca-on", "intl"):
        actor = WhereAmI.options(label_selector={keys["jurisdiction"]: jurisdiction}).remote()
        node = ray.get(actor.node_id.remote(), timeout=60)
        assert labels_by_node[node][keys["jurisdiction"]] == jurisdiction
        ray.kill(actor)


def test_ray_job_submit_runs_against_the_stack(stack):
    env = dict(os.environ)
    env.pop("RAY_ADDRESS", None)
    code = "import ray; ray.init(); print('nodes', len([n for n in ray.nodes() if n['Alive']]))"
    ray_cli = str(Path(sys.executable).parent / "ray")
    out = subprocess.run([ray_cli, "job", "submit", "--address", stack["env"]["EXCHANGE_RAY_DASHBOARD"],
                          "--", sys.executable, "-c", code],
                         env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
    assert f"nodes {len(_topology()['local_nodes'])}" in out.stdout


def test_status_names_every_part_and_exits_zero(stack):
    out = subprocess.run([*STACK, "status"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr
    for part in ("kafka", "postgres", "dynamodb", "ray"):
        assert part in out.stdout


def test_up_is_a_noop_when_running(stack):
    out = subprocess.run([*STACK, "up"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    assert out.stdout.count("already running") == 4


def test_port_taken_is_named_and_nothing_starts(stack, tmp_path):
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen()
    port = holder.getsockname()[1]
    env = dict(os.environ, EXCHANGE_STATE_DIR=str(tmp_path / "state"), EXCHANGE_KAFKA_PORT=str(port),
               EXCHANGE_KAFKA_CONTROLLER_PORT="29193", EXCHANGE_POSTGRES_PORT="25532",
               EXCHANGE_DYNAMODB_PORT="28100", EXCHANGE_RAY_PORT="26479",
               EXCHANGE_RAY_DASHBOARD_PORT="28365", EXCHANGE_RAY_CLIENT_PORT="26101",
               EXCHANGE_RAY_NODE_PORT_BASE="27500")
    try:
        out = subprocess.run([*STACK, "up"], capture_output=True, text=True, timeout=120, env=env)
    finally:
        holder.close()
    assert out.returncode == 2
    assert f"port {port} (needed by kafka) is taken by pid {os.getpid()}" in out.stderr
    assert "Traceback" not in out.stderr
    assert not (tmp_path / "state" / "kafka" / "pid").exists()
    assert not (tmp_path / "state" / "stack.json").exists()


def test_down_with_nothing_running_succeeds(tmp_path):
    env = dict(os.environ, EXCHANGE_STATE_DIR=str(tmp_path / "state"), EXCHANGE_RAY_PORT="26479")
    out = subprocess.run([*STACK, "down"], capture_output=True, text=True, timeout=60, env=env)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "not running" in out.stdout
