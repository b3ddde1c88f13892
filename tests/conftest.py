"""Shared test wiring: where the real local stack is (state/stack.json from cluster/stack.py).

Tests that need the stack take the `stack` fixture. Without a running stack they are
skipped, unless EXCHANGE_REQUIRE_STACK=1 (the README's test command sets it), where a
missing stack is a failure: CI must never pass by skipping the real parts.
"""

from __future__ import annotations

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
def stack() -> dict:
    """The running local stack's addresses and client environment."""
    if _STACK is None:
        message = f"the local stack is not up ({STATE / 'stack.json'} missing): run cluster/stack.py up"
        if os.environ.get("EXCHANGE_REQUIRE_STACK") == "1":
            pytest.fail(message)
        pytest.skip(message)
    return _STACK


@pytest.fixture(scope="session")
def ray_session(stack):
    """One Ray driver connection for the whole test session (never one per test)."""
    import ray

    ray.init(address=stack["env"]["RAY_ADDRESS"], namespace="exchange-tests",
             log_to_driver=False, logging_level="WARNING")
    yield ray
    ray.shutdown()
