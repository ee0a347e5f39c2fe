"""Discord's published OpenAPI spec as a request checker for the fake Discord.

Every REST request the bot sends is checked for its method, path, query and JSON body; the spec
leaves objects open, so unknown keys are made violations too, except the few that discord.py
sends and Discord accepts (listed below, each with why).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from aiohttp import web
from openapi_core import OpenAPI
from openapi_core.testing import MockRequest, MockResponse

from tests.fakes.spec_files import SPECS_DIR

try:  # openapi-core moved Config between releases
    from openapi_core import Config
except ImportError:  # pragma: no cover
    from openapi_core.unmarshalling.request.configs import Config  # type: ignore[no-redef]

SPEC_PATH = SPECS_DIR / "discord-openapi.json"
SPEC_HOST = "https://discord.com"

# Keys discord.py 2.7 sends that the spec leaves out and Discord ignores: stripped before the
# check (and counted in `tolerated`), so any other unknown key is still a violation.
TOLERATED_EXTRAS = {
    ("PUT", "/commands"): {"nsfw"},  # Discord's docs list it; this spec's schema doesn't
    ("PATCH", "webhooks/{}/{}/messages/{}"): {"tts"},  # edits can't change tts
    ("PATCH", "channels/{}/messages/{}"): {"tts"},
}


class SpecChecker:
    """Checks method, path, query and JSON body against the spec; unknown body keys fail too."""

    def __init__(self, path: Path = SPEC_PATH) -> None:
        spec = json.loads(path.read_text())
        spec.pop("security", None)
        for item in spec["paths"].values():
            for operation in item.values():
                if isinstance(operation, dict):
                    # Auth is checked by the fake itself; openapi-core can't read this scheme.
                    operation.pop("security", None)
        _forbid_unknown_keys(spec["components"])
        # Discord reads a snowflake sent as a JSON integer too, and discord.py sends them so
        # (message_reference); the spec only describes the string form.
        snowflake = spec["components"]["schemas"]["SnowflakeType"]
        spec["components"]["schemas"]["SnowflakeType"] = {
            "anyOf": [snowflake, {"type": "integer", "minimum": 0}]
        }
        self._api = OpenAPI.from_dict(spec, config=Config(spec_validator_cls=None))
        self.tolerated: list[str] = []

    def check(self, method: str, path: str, query: dict[str, str], body: bytes) -> str | None:
        request = MockRequest(
            SPEC_HOST,
            method.lower(),
            path,
            args=query,
            data=self._strip_tolerated(method, path, body) or None,
            content_type="application/json" if body else None,
        )
        try:
            self._api.validate_request(request)
        except Exception as error:
            cause = error.__cause__
            detail = getattr(cause, "schema_errors", None) or cause or error
            return f"{method} {path}: {type(error).__name__}: {detail}"
        return None

    def check_response(self, method: str, path: str, response: web.Response) -> str | None:
        """What is wrong with the fake's own answer to a request, by the spec, or None."""
        assert isinstance(response.body, bytes)
        request = MockRequest(SPEC_HOST, method.lower(), path)
        answer = MockResponse(
            response.body, status_code=response.status, content_type="application/json"
        )
        try:
            self._api.validate_response(request, answer)
        except Exception as error:
            cause = error.__cause__
            detail = getattr(cause, "schema_errors", None) or cause or error
            return f"response to {method} {path}: {type(error).__name__}: {detail}"
        return None

    def _strip_tolerated(self, method: str, path: str, body: bytes) -> bytes:
        if not body:
            return body
        payload = json.loads(body)
        shape = re.sub(r"/webhooks/[^/]+/[^/]+", "/webhooks/{}/{}", path)
        shape = re.sub(r"/([0-9]+|@original)(?=/|$)", "/{}", shape)
        for (rule_method, rule_path), keys in TOLERATED_EXTRAS.items():
            if method != rule_method or not shape.endswith(rule_path):
                continue
            for item in payload if isinstance(payload, list) else [payload]:
                for key in keys & item.keys():
                    self.tolerated.append(f"{method} {rule_path}: {key}")
                    del item[key]
        return json.dumps(payload).encode()


def _forbid_unknown_keys(node: Any) -> None:
    # The spec leaves additionalProperties open; closing them catches a misspelt or invented key
    # here, where Discord would often ignore it silently.
    if isinstance(node, dict):
        kind = node.get("type")
        is_object = kind == "object" or (isinstance(kind, list) and "object" in kind)
        if is_object and "properties" in node and "additionalProperties" not in node:
            node["additionalProperties"] = False
        for value in node.values():
            _forbid_unknown_keys(value)
    elif isinstance(node, list):
        for value in node:
            _forbid_unknown_keys(value)
