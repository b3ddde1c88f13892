"""Shared test wiring: where the real local stack is (state/stack.json from cluster/stack.py).

Tests that need the stack take the `stack` fixture. Without a running stack they are
skipped, unless EXCHANGE_REQUIRE_STACK=1 (the README's test command sets it), where a
missing stack is a failure: CI must never pass by skipping the real parts.
"""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
STATE = Path(os.environ.get("EXCHANGE_STATE_DIR", ROOT / "state"))


def _load_stack() -> dict | None:
    try:
        stack = json.loads((STATE / "stack.json").read_text())
    except (OSError, ValueError):
        return None
    # Clients (aiokafka, asyncpg, boto3, ray) read these; set them before ray is imported.
    for key, value in stack["env"].items():
        os.environ.setdefault(key, value)
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "local")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "local")
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    return stack


_STACK = _load_stack()


@pytest.fixture(scope="session")
def stack():
    """The running local stack's addresses and client environment.

    At the end of the session it deletes the Kafka topics the tests made (every fixture
    uses a prefix of its own); topics that were there before, and the stack's own
    (``exchange.``), stay. Left behind, a day of test runs kept thousands of partitions
    on the broker, which cost it heap and CPU (exchange/journal/kafka_journal.py,
    delete_topics).
    """
    if _STACK is None:
        message = f"the local stack is not up ({STATE / 'stack.json'} missing): run cluster/stack.py up"
        if os.environ.get("EXCHANGE_REQUIRE_STACK") == "1":
            pytest.fail(message)
        pytest.skip(message)
    from exchange.journal import delete_topics, list_topics

    bootstrap = _STACK["env"]["EXCHANGE_KAFKA_BOOTSTRAP"]
    before = asyncio.run(list_topics(bootstrap))
    yield _STACK
    asyncio.run(delete_topics(bootstrap, lambda t: t not in before and not t.startswith("exchange.")))


@pytest.fixture(scope="session")
def child_env(stack) -> dict:
    """The environment for a command the tests run in a child process against the stack
    (a benchmark): the stack's client settings, and where to find Python and the code."""
    keep = ("PATH", "HOME", "PYTHONPATH", "EXCHANGE_STATE_DIR")
    return {**stack["env"], **{k: v for k, v in os.environ.items() if k in keep}}


@pytest.fixture(scope="session")
def ray_session(stack):
    """One Ray driver connection for the whole test session (never one per test)."""
    import ray

    ray.init(address=stack["env"]["RAY_ADDRESS"], namespace="exchange-tests",
             log_to_driver=False, logging_level="WARNING")
    yield ray
    ray.shutdown()
