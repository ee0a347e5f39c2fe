"""OpenAI's published OpenAPI description (tests/specs/openai-openapi.json) as a checker.

Loaded once with openapi-core. The file is used unchanged: its OpenAPI 3.0 leftovers are adapted
in code (discriminators without a mapping are dropped, `nullable: true` becomes a union with
null), so refreshing the spec is a plain file replacement.
"""

from __future__ import annotations

import json
from functools import cache
from typing import Any

from openapi_core import Config, OpenAPI
from openapi_core.testing import MockRequest, MockResponse
from openapi_core.validation.schemas import oas31_schema_validators_factory

from tests.fakes.spec_files import SPECS_DIR

SPEC_PATH = SPECS_DIR / "openai-openapi.json"
# openapi-core matches requests against the spec's server URL, so checked requests are replayed
# as if they were sent there (the fake's loopback URL differs only in host).
SPEC_HOST = "https://api.openai.com"


def _adapt(node: Any) -> None:
    if isinstance(node, dict):
        node.pop("discriminator", None)
        if node.pop("nullable", False) is True:
            if isinstance(node.get("type"), str):
                node["type"] = [node["type"], "null"]
                if "enum" in node:
                    node["enum"] = [*node["enum"], None]
            else:
                inner = dict(node)
                node.clear()
                node["anyOf"] = [inner, {"type": "null"}]
        for value in node.values():
            _adapt(value)
    elif isinstance(node, list):
        for value in node:
            _adapt(value)


@cache
def openai_spec() -> OpenAPI:
    document = json.loads(SPEC_PATH.read_text())
    _adapt(document)
    return OpenAPI.from_dict(document, config=Config(spec_validator_cls=None))


def check_schema(name: str, value: Any) -> None:
    """Raise if `value` does not match `#/components/schemas/<name>`."""
    spec = openai_spec().spec
    schema = spec / "components" / "schemas" / name
    oas31_schema_validators_factory.create(spec, schema).validate(value)


def request_for(
    method: str, path: str, body: bytes | None = None, headers: dict[str, str] | None = None
) -> MockRequest:
    """A request as openapi-core sees it; `path` includes the `/v1` prefix."""
    return MockRequest(SPEC_HOST, method, path, data=body, headers=headers or {})


def check_request(
    method: str, path: str, body: bytes | None, headers: dict[str, str] | None = None
) -> None:
    """Raise if the request (method, /v1 path, JSON body, headers) breaks the spec."""
    openai_spec().validate_request(request_for(method, path, body, headers))


def check_response(
    request: MockRequest,
    status: int,
    body: bytes,
    *,
    headers: dict[str, str] | None = None,
    content_type: str = "application/json",
) -> None:
    """Raise if a JSON response to `request` breaks the spec."""
    response = MockResponse(body, status_code=status, headers=headers, content_type=content_type)
    openai_spec().validate_response(request, response)
