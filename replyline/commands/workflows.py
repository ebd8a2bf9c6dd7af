"""``replyline workflows``: validate, dry-run, import and export workflow definitions."""

from __future__ import annotations

import argparse
import json
import sys
import urllib.error
import urllib.request
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import yaml

from replyline.commands import workflows_admin
from replyline.commands._parser import subcommand
from services.scheduler.workflow.definition import (
    Definition,
    DefinitionError,
    load_file,
    slug,
)
from services.scheduler.workflow.timeline import format_timeline, simulate

DEFAULT_DIR = "workflows"


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    summary = "validate, dry-run, import and export workflow definitions"
    parser = subcommand(subparsers, "workflows", run, help=summary)
    actions = parser.add_subparsers(dest="workflows_action", required=True)

    validate = actions.add_parser("validate", help="check definition files (exit 1 on any problem)")
    validate.add_argument("files", nargs="+", type=Path)

    test = actions.add_parser("test", help="print the timeline for a sample contact; sends nothing")
    test.add_argument("file", type=Path)
    test.add_argument(
        "--contact",
        default="{}",
        help="sample contact as JSON (or @path to a JSON file), e.g. "
        '\'{"first_name": "Ana", "phone": "+15551234567", "source": "facebook_ad"}\'',
    )
    test.add_argument("--start", help="ISO time the enrollment starts (default: now, UTC)")
    _api_arguments(test)  # with --api, FILE is the name of a stored workflow

    export = actions.add_parser(
        "export", help="convert a definition to JSON (or YAML); with --api, FILE is a workflow name"
    )
    export.add_argument("file", type=Path)
    export.add_argument("--format", choices=("json", "yaml"), default="json")
    export.add_argument("-o", "--output", type=Path, help="write here instead of stdout")
    _api_arguments(export)

    imp = actions.add_parser(
        "import",
        help="validate a YAML/JSON definition and store it as YAML (with --api: in the scheduler)",
    )
    imp.add_argument("file", type=Path)
    imp.add_argument("--dir", type=Path, default=Path(DEFAULT_DIR), help="workflows folder")
    imp.add_argument("--force", action="store_true", help="overwrite an existing file")
    _api_arguments(imp)
    workflows_admin.add_actions(actions, _api_arguments)
    return parser


def _api_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--api", help="ingest base URL (e.g. http://localhost:8080): use the HTTP API")
    parser.add_argument("--token", help="admin API token (with --api)")
    parser.add_argument("--timeout", type=float, default=10.0, help="HTTP timeout in seconds")


def run(args: argparse.Namespace) -> int:
    action = args.workflows_action
    if action == "validate":
        return _validate(args.files)
    if action in workflows_admin.ADMIN_ACTIONS:
        return workflows_admin.run(args, _call, _api_failure)
    if action == "test" and args.api:
        contact = _contact(args.contact)
        if contact is None:
            return 2
        args.contact_data = contact
        return workflows_admin.run(args, _call, _api_failure)
    if action == "test":
        return _test(args.file, args.contact, args.start)
    if action in ("export", "import") and args.api:
        if not args.token:
            print("error: --api needs --token", file=sys.stderr)
            return 2
        if action == "export":
            return _api_export(args, str(args.file))
        return _api_import(args)
    if action == "export":
        return _export(args.file, args.format, args.output)
    if action == "import":
        return _import(args.file, args.dir, args.force)
    raise AssertionError(action)


def _load(path: Path) -> Definition | None:
    try:
        return load_file(path)
    except DefinitionError as err:
        print(err, file=sys.stderr)
        return None


def _validate(files: list[Path]) -> int:
    failed = False
    for path in files:
        definition = _load(path)
        if definition is None:
            failed = True
            continue
        print(
            f"{path}: ok ({definition.name!r} v{definition.version}, "
            f"{len(definition.steps)} steps, trigger {definition.workflow.trigger.type})"
        )
    return 1 if failed else 0


def _contact(contact_arg: str) -> dict[str, Any] | None:
    try:
        text = Path(contact_arg[1:]).read_text() if contact_arg.startswith("@") else contact_arg
        contact = json.loads(text)
    except (OSError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return None
    if not isinstance(contact, dict):
        print("error: --contact must be a JSON object", file=sys.stderr)
        return None
    return contact


def _test(path: Path, contact_arg: str, start_arg: str | None) -> int:
    definition = _load(path)
    if definition is None:
        return 1
    try:
        text = Path(contact_arg[1:]).read_text() if contact_arg.startswith("@") else contact_arg
        contact = json.loads(text)
        start = datetime.fromisoformat(start_arg) if start_arg else datetime.now(UTC)
    except (OSError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if not isinstance(contact, dict):
        print("error: --contact must be a JSON object", file=sys.stderr)
        return 2
    if start.tzinfo is None:
        start = start.replace(tzinfo=UTC)
    print(f"# {definition.name} v{definition.version} - dry run, nothing is sent")
    print(format_timeline(simulate(definition, contact, start), start))
    return 0


def _render(definition: Definition, fmt: str) -> str:
    data = definition.to_builtins()
    if fmt == "json":
        return json.dumps(data, indent=2, ensure_ascii=False) + "\n"
    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True)


def _export(path: Path, fmt: str, output: Path | None) -> int:
    definition = _load(path)
    if definition is None:
        return 1
    text = _render(definition, fmt)
    if output is None:
        sys.stdout.write(text)
    else:
        output.write_text(text, encoding="utf-8")
        print(f"wrote {output}")
    return 0


def _import(path: Path, directory: Path, force: bool) -> int:
    definition = _load(path)
    if definition is None:
        return 1
    target = directory / f"{slug(definition.name)}.yaml"
    if target.exists() and not force:
        print(f"error: {target} exists (use --force to overwrite)", file=sys.stderr)
        return 1
    directory.mkdir(parents=True, exist_ok=True)
    target.write_text(_render(definition, "yaml"), encoding="utf-8")
    print(f"imported {definition.name!r} v{definition.version} into {target}")
    return 0


def _call(
    args: argparse.Namespace, method: str, path: str, body: bytes | None = None, content_type: str = ""
) -> tuple[int, bytes]:
    headers = {"Authorization": f"Bearer {args.token}"}
    if content_type:
        headers["Content-Type"] = content_type
    request = urllib.request.Request(
        args.api.rstrip("/") + path, data=body, headers=headers, method=method
    )
    try:
        with urllib.request.urlopen(request, timeout=args.timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def _api_failure(status: int, raw: bytes) -> int:
    try:
        data = json.loads(raw)
    except ValueError:
        data = {"error": raw.decode("utf-8", "replace").strip()}
    for issue in data.get("issues", []) if isinstance(data, dict) else []:
        print(f"{issue.get('source')}:{issue.get('line')}: {issue.get('reason')}", file=sys.stderr)
    error = data.get("error") if isinstance(data, dict) else data
    print(f"error: HTTP {status}: {error}", file=sys.stderr)
    return 1


def _api_import(args: argparse.Namespace) -> int:
    path: Path = args.file
    try:
        body = path.read_bytes()
    except OSError as err:
        print(f"error: cannot read {path}: {err.strerror}", file=sys.stderr)
        return 1
    content_type = "application/json" if path.suffix == ".json" else "application/yaml"
    try:
        status, raw = _call(
            args, "POST", "/api/workflows?" + urlencode({"source": path.name}), body, content_type
        )
    except (urllib.error.URLError, TimeoutError, ConnectionError) as exc:
        print(f"error: cannot reach {args.api}: {exc}", file=sys.stderr)
        return 1
    if status != 201:
        return _api_failure(status, raw)
    data = json.loads(raw)
    print(f"imported {data['name']!r} v{data['version']} into the scheduler")
    return 0


def _api_export(args: argparse.Namespace, name: str) -> int:
    path = f"/api/workflows/{quote(name, safe='')}?" + urlencode({"format": args.format})
    try:
        status, raw = _call(args, "GET", path)
    except (urllib.error.URLError, TimeoutError, ConnectionError) as exc:
        print(f"error: cannot reach {args.api}: {exc}", file=sys.stderr)
        return 1
    if status != 200:
        return _api_failure(status, raw)
    text = raw.decode("utf-8")
    if args.output is None:
        sys.stdout.write(text)
    else:
        args.output.write_text(text, encoding="utf-8")
        print(f"wrote {args.output}")
    return 0
