"""Schemathesis against the API's own /openapi.json on the real stack: no request gets a 5xx.

The requests go to the running app (conftest's `api_app`: real Ray hosts, Kafka,
PostgreSQL, the Serve proxy). The schema is exchange/api/openapi.py's document, read at
collection so that each operation is a test item of its own; a test below checks that
the app serves exactly that document at /openapi.json. (Loading it from the URL at run
time, `schemathesis.pytest.from_fixture`, fails under pytest 9's subtests with
schemathesis 4.32: AttributeError `_nodeid`.)
Every operation (the three JSON-RPC endpoints, whose bodies are a oneOf of every
method's envelope, and the three login routes) gets `EXCHANGE_FUZZ_EXAMPLES` examples
(default 25) per generation mode, valid and invalid (schemathesis' positive and negative
modes), plus schemathesis' deterministic coverage cases (about 1,400 requests in all for the
betting endpoint), and the only check is `not_a_server_error`: refusals are JSON-RPC
errors or 4xx, never 5xx.

Requests carry the fuzz module's own operator session (X-Application and
X-Authentication), so the operator routes run too, on the app's own schema and hosts;
each request comes from its own X-Forwarded-For address (the app trusts it here) so
that the per-IP token buckets do not turn the run into 429s. The session routes
(/api/keepAlive, /api/logout) get generated tokens, never the module's own.
Negative examples that leave a required header out are sent without it.
"""

from __future__ import annotations

import os
from collections import Counter, defaultdict

import msgspec
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error

from exchange.api.openapi import openapi_document
from tests.e2e.conftest import APP_KEY, OPERATOR, Api

pytestmark = pytest.mark.stack

EXAMPLES = int(os.environ.get("EXCHANGE_FUZZ_EXAMPLES", 25))
SESSION_ROUTES = ("/api/login", "/api/keepAlive", "/api/logout")

OUTCOMES: dict[str, Counter] = defaultdict(Counter)     # path -> outcome -> examples
_addresses = (f"10.{a}.{b}.{c}" for a in range(100, 200) for b in range(256) for c in range(1, 255))


@pytest.fixture(scope="module")
def fuzz_target(api_app) -> dict:
    op = Api(api_app["base"], "10.99.0.1")
    assert op.login(*OPERATOR)["status"] == "SUCCESS"
    return {"base": api_app["base"], "token": op.token}


schema = schemathesis.openapi.from_dict(msgspec.json.decode(msgspec.json.encode(openapi_document("us-nj"))))


@schema.parametrize()
@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
def test_no_server_error(case, fuzz_target):
    headers = {"X-Forwarded-For": next(_addresses), "X-Application": APP_KEY}
    if case.path not in SESSION_ROUTES:
        headers["X-Authentication"] = fuzz_target["token"]
    response = case.call_and_validate(base_url=fuzz_target["base"], headers=headers,
                                      checks=[not_a_server_error], timeout=30)
    OUTCOMES[case.path][_outcome(response)] += 1


def _outcome(response) -> str:
    """`result`, a JSON-RPC error code (with the APING code), a login status, or the HTTP status."""
    try:
        body = response.json()
    except ValueError:
        return f"http {response.status_code}"
    if not isinstance(body, dict):
        return f"http {response.status_code}"
    if "result" in body:
        return "result"
    if isinstance(body.get("error"), dict):
        data = body["error"].get("data") or {}
        aping = data.get("APINGException") or data.get("AccountAPINGException") or {}
        return f"error {body['error'].get('code')} {aping.get('errorCode', '')}".strip()
    return f"{body.get('status')} {body.get('error', '')}".strip()


def test_the_fuzz_reached_the_handlers():
    """Guards the guard: if authentication broke, every example would be refused before any
    handler ran and the 5xx check would pass vacuously. Each JSON-RPC endpoint must have
    answered some examples with a result. (Prints what the examples got; NO_APP_KEY and
    NO_SESSION come from negative examples that leave a required header out.)"""
    if not OUTCOMES:
        pytest.skip("the fuzz tests did not run in this session")
    for path, outcomes in sorted(OUTCOMES.items()):
        print(path, dict(outcomes.most_common()))
    for path in ("/exchange/betting/json-rpc/v1", "/exchange/account/json-rpc/v1",
                 "/exchange/operator/json-rpc/v1"):
        assert OUTCOMES[path]["result"] > 0, (path, dict(OUTCOMES[path]))


def test_the_fuzzed_document_is_the_generated_one(fuzz_target):
    """The document the fuzzer read is exchange/api/openapi.py's, not something else on the route."""
    import httpx

    served = httpx.get(f"{fuzz_target['base']}/openapi.json", timeout=30).json()
    assert served == msgspec.json.decode(msgspec.json.encode(openapi_document("us-nj")))
    assert set(served["paths"]) == {"/exchange/betting/json-rpc/v1", "/exchange/account/json-rpc/v1",
                                    "/exchange/operator/json-rpc/v1", *SESSION_ROUTES}


def test_a_login_name_with_a_nul_is_an_unknown_name(fuzz_target):
    """Found by this fuzz: PostgreSQL refuses a NUL in text, and the login answered 500."""
    client = Api(fuzz_target["base"], "10.99.0.2")
    reply = client.http.post("/api/login", data={"username": "al\x00ice", "password": "whatever-1"},
                             headers={"X-Forwarded-For": client.ip, "X-Application": APP_KEY})
    assert reply.status_code == 200
    assert reply.json()["error"] == "INVALID_USERNAME_OR_PASSWORD"
