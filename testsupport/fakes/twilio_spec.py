"""Checks HTTP requests against Twilio's official OpenAPI description of the 2010 API.

The fake Twilio server runs every request through :class:`TwilioSpec` and answers
400 on any violation, so a client that drifts from the real wire protocol fails
loudly in tests instead of in production. Only what the spec states is checked,
plus the Messages create rules Twilio documents in prose (a sender and a content
parameter are required) because the spec's schema only marks ``To`` required.
"""

from __future__ import annotations

import base64
import json
import re
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

_SHARED_SPEC = Path(__file__).resolve().parents[3] / "shared" / "reference" / "twilio_api_v2010.json"
# The project's shared reference when the checkout sits beside it, else the copy
# kept in the repo so a bare clone can run the tests.
DEFAULT_SPEC_PATH = (
    _SHARED_SPEC
    if _SHARED_SPEC.exists()
    else Path(__file__).resolve().parent / "reference" / "twilio_api_v2010.json"
)

MESSAGES_PATH = "/2010-04-01/Accounts/{AccountSid}/Messages.json"
MESSAGE_SCHEMA = "api.v2010.account.message"
FORM = "application/x-www-form-urlencoded"


@dataclass(frozen=True)
class Operation:
    template: str
    method: str
    regex: re.Pattern[str]
    path_params: dict[str, dict[str, Any]]
    query_params: dict[str, dict[str, Any]]
    form_schema: dict[str, Any] | None


@dataclass
class CheckedRequest:
    """What the checker learned about one request; ``violations`` empty means it conforms."""

    method: str
    path: str
    operation: Operation | None = None
    path_values: dict[str, str] = field(default_factory=dict)
    violations: list[str] = field(default_factory=list)


def _spec_path() -> Path:
    return DEFAULT_SPEC_PATH


class TwilioSpec:
    def __init__(self, path: Path | None = None) -> None:
        self.path = path or _spec_path()
        self.doc: dict[str, Any] = json.loads(self.path.read_text())

    @cached_property
    def operations(self) -> list[Operation]:
        ops: list[Operation] = []
        for template, item in self.doc["paths"].items():
            pattern = re.escape(template)
            pattern = re.sub(r"\\\{(\w+)\\\}", r"(?P<\1>[^/]+)", pattern)
            regex = re.compile(f"^{pattern}$")
            for method, op in item.items():
                if method not in ("get", "post", "put", "delete", "patch"):
                    continue
                params = op.get("parameters", [])
                path_params = {p["name"]: p for p in params if p["in"] == "path"}
                query_params = {p["name"]: p for p in params if p["in"] == "query"}
                form_schema = None
                content = op.get("requestBody", {}).get("content", {})
                if FORM in content:
                    form_schema = self.resolve(content[FORM]["schema"])
                ops.append(
                    Operation(
                        template, method.upper(), regex, path_params, query_params, form_schema
                    )
                )
        return ops

    def resolve(self, schema: dict[str, Any]) -> dict[str, Any]:
        ref = schema.get("$ref")
        if ref is None:
            return schema
        node: Any = self.doc
        for part in ref.lstrip("#/").split("/"):
            node = node[part]
        return self.resolve(node)

    def schema(self, name: str) -> dict[str, Any]:
        return self.resolve({"$ref": f"#/components/schemas/{name}"})

    def enum(self, name: str) -> list[str]:
        return list(self.schema(name)["enum"])

    def check(
        self,
        *,
        method: str,
        path: str,
        headers: dict[str, str],
        query: list[tuple[str, str]],
        form: list[tuple[str, str]] | None,
        account_sid: str,
        auth_token: str,
    ) -> CheckedRequest:
        result = CheckedRequest(method=method, path=path)
        candidates = [op for op in self.operations if op.regex.match(path)]
        if not candidates:
            result.violations.append(f"path {path} is not in the spec")
            return result
        op = next((o for o in candidates if o.method == method), None)
        if op is None:
            allowed = sorted(o.method for o in candidates)
            result.violations.append(f"method {method} not allowed on {path} (spec: {allowed})")
            return result
        result.operation = op
        match = op.regex.match(path)
        assert match is not None
        result.path_values = match.groupdict()
        v = result.violations
        for name, value in result.path_values.items():
            v.extend(
                self._check_value(f"path parameter {name}", value, op.path_params[name]["schema"])
            )
        v.extend(
            self._check_auth(headers, result.path_values.get("AccountSid"), account_sid, auth_token)
        )
        for name, value in query:
            param = op.query_params.get(name)
            if param is None:
                v.append(f"query parameter {name!r} is not in the spec for {method} {op.template}")
            else:
                v.extend(self._check_value(f"query parameter {name}", value, param["schema"]))
        if op.form_schema is not None:
            v.extend(self._check_form(op, headers, form or []))
        elif form:
            v.append(f"{method} {op.template} takes no request body")
        return result

    def _check_auth(
        self, headers: dict[str, str], path_account: str | None, account_sid: str, auth_token: str
    ) -> list[str]:
        raw = headers.get("Authorization", "")
        if not raw.startswith("Basic "):
            return ["missing HTTP Basic authorization (spec security: accountSid_authToken)"]
        try:
            user, _, password = base64.b64decode(raw[6:]).decode().partition(":")
        except ValueError:
            return ["malformed Basic authorization header"]
        problems = []
        if user != account_sid or password != auth_token:
            problems.append("Basic auth does not match the account sid and auth token")
        if path_account is not None and path_account != user:
            problems.append(
                f"AccountSid in path {path_account} differs from the authenticated {user}"
            )
        return problems

    def _check_form(
        self, op: Operation, headers: dict[str, str], form: list[tuple[str, str]]
    ) -> list[str]:
        assert op.form_schema is not None
        problems = []
        ctype = headers.get("Content-Type", "").split(";")[0].strip()
        if ctype != FORM:
            problems.append(f"Content-Type {ctype!r}, spec requires {FORM}")
        props = op.form_schema.get("properties", {})
        names = {name for name, _ in form}
        for name, value in form:
            prop = props.get(name)
            if prop is None:
                problems.append(f"form parameter {name!r} is not in the spec for {op.template}")
            else:
                problems.extend(self._check_value(f"form parameter {name}", value, prop))
        for name in op.form_schema.get("required", []):
            if name not in names:
                problems.append(f"required form parameter {name!r} missing")
        if op.template == MESSAGES_PATH and op.method == "POST":
            # Documented on the operation (not in the schema's "required"): a sender and content.
            if not names & {"From", "MessagingServiceSid"}:
                problems.append("one of From / MessagingServiceSid is required")
            if not names & {"Body", "MediaUrl", "ContentSid"}:
                problems.append("one of Body / MediaUrl / ContentSid is required")
            body = dict(form).get("Body")
            if body is not None and len(body) > 1600:
                problems.append("Body longer than 1600 characters")
        return problems

    def _check_value(self, label: str, value: str, schema: dict[str, Any]) -> list[str]:
        schema = self.resolve(schema)
        kind = schema.get("type")
        problems = []
        if "enum" in schema and value not in schema["enum"]:
            problems.append(f"{label}={value!r} not one of {schema['enum']}")
        if kind == "integer" and not re.fullmatch(r"-?\d+", value):
            problems.append(f"{label}={value!r} is not an integer")
        if kind == "number":
            try:
                float(value)
            except ValueError:
                problems.append(f"{label}={value!r} is not a number")
        if kind == "boolean" and value not in ("true", "false", "True", "False"):
            problems.append(f"{label}={value!r} is not a boolean")
        pattern = schema.get("pattern")
        if pattern and not re.search(pattern, value):
            problems.append(f"{label}={value!r} does not match {pattern}")
        if "minLength" in schema and len(value) < schema["minLength"]:
            problems.append(f"{label} shorter than {schema['minLength']}")
        if "maxLength" in schema and len(value) > schema["maxLength"]:
            problems.append(f"{label} longer than {schema['maxLength']}")
        if schema.get("format") == "uri":
            parts = urlsplit(value)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                problems.append(f"{label}={value!r} is not an absolute http(s) URL")
            elif "_" in parts.hostname:
                problems.append(f"{label}={value!r}: underscores are not allowed in the hostname")
        if schema.get("format") == "date-time" and not _looks_like_date(value):
            problems.append(f"{label}={value!r} is not a date or date-time")
        return problems

    def check_message_resource(self, message: dict[str, Any]) -> list[str]:
        """Self-check of the fake: a response body has exactly the spec's message properties."""
        props = set(self.schema(MESSAGE_SCHEMA)["properties"])
        problems = []
        if set(message) != props:
            problems.append(f"message keys differ from spec: {sorted(set(message) ^ props)}")
        if message.get("status") not in self.enum("message_enum_status"):
            problems.append(f"status {message.get('status')!r} not in message_enum_status")
        return problems


_DATE_RE = re.compile(r"^\d{4}-\d{2}-\d{2}(T\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:?\d{2})?)?$")


def _looks_like_date(value: str) -> bool:
    return bool(_DATE_RE.match(value))
