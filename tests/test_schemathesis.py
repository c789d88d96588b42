"""Property-based API testing from our own OpenAPI document (schemathesis): whatever the generated
request, the service answers without a 5xx and the response conforms to the documented schema."""

from __future__ import annotations

import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from app.factory import create_app
from app.settings import Settings
from matching.index import AccountIndex
from tests.conftest import NO_AUTH, accounts_table

app = create_app(Settings(), index=AccountIndex.build(accounts_table()), security=NO_AUTH)
# /readyz answers 503 by design while the app is not started or is draining (the ASGI transport
# runs no lifespan around each call); its transitions are tested in tests/test_api.py.
schema = schemathesis.openapi.from_asgi("/schema/openapi.json", app).exclude(path="/readyz")


@schema.parametrize()
@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
def test_api_conforms_to_its_openapi_document(case: schemathesis.Case) -> None:
    response = case.call()
    assert response.status_code < 500, response.text
    case.validate_response(
        response,
        checks=(status_code_conformance, content_type_conformance, response_schema_conformance),
    )
