"""Property-based fuzzing of every route from /openapi.json: no input gives a 500.

Signed routes are exercised signed (a registered identity signs each
generated request), so generated bodies reach the shards and the content
service. Responses must also match their documented status codes, media
types and schemas. CANISTRY_LONG=1 runs many more examples.
"""

from __future__ import annotations

import os
import uuid

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from canistry.client import Client, Identity

EXAMPLES = 500 if os.environ.get("CANISTRY_LONG") == "1" else 60


class Signer(requests.auth.AuthBase):
    """Signs each prepared request as docs/design.md §5 says, after schemathesis built it."""

    def __init__(self, identity: Identity) -> None:
        self.identity = identity

    def __call__(self, r: requests.PreparedRequest) -> requests.PreparedRequest:
        body = r.body or b""
        if isinstance(body, str):
            body = body.encode()
        assert r.method is not None
        r.headers["Authorization"] = self.identity.authorization(r.method, r.path_url, body)
        return r


@pytest.fixture(scope="session")
def api_schema(url: str) -> schemathesis.BaseSchema:
    return schemathesis.openapi.from_url(f"{url}/openapi.json")


@pytest.fixture(scope="session")
def fuzzer(url: str) -> Signer:
    identity = Identity.generate()
    with Client(url, identity, retry_unavailable_s=60) as api:
        api.register("Fuzz", f"fuzz-{uuid.uuid4().hex[:6]}@example.org")
    return Signer(identity)


schema = schemathesis.pytest.from_fixture("api_schema")


@schema.parametrize()
@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    phases=[Phase.explicit, Phase.generate],
    derandomize=os.environ.get("CANISTRY_LONG") != "1",
)
def test_no_input_gives_a_server_error(case: schemathesis.Case, url: str, fuzzer: Signer) -> None:
    response = case.call(base_url=url, auth=fuzzer, timeout=15)
    case.validate_response(
        response,
        checks=[
            not_a_server_error,
            status_code_conformance,
            content_type_conformance,
            response_schema_conformance,
        ],
    )
