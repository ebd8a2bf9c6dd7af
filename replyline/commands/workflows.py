"""``replyline workflows``: validate, dry-run, import and export workflow definitions."""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

from services.scheduler.workflow.definition import (
    Definition,
    DefinitionError,
    load_file,
    slug,
)
from services.scheduler.workflow.timeline import format_timeline, simulate

DEFAULT_DIR = "workflows"


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "workflows", help="validate, dry-run, import and export workflow definitions"
    )
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

    export = actions.add_parser("export", help="convert a definition to JSON (or YAML)")
    export.add_argument("file", type=Path)
    export.add_argument("--format", choices=("json", "yaml"), default="json")
    export.add_argument("-o", "--output", type=Path, help="write here instead of stdout")

    imp = actions.add_parser("import", help="validate a YAML/JSON definition and store it as YAML")
    imp.add_argument("file", type=Path)
    imp.add_argument("--dir", type=Path, default=Path(DEFAULT_DIR), help="workflows folder")
    imp.add_argument("--force", action="store_true", help="overwrite an existing file")
    parser.set_defaults(handler=run)
    return parser


def run(args: argparse.Namespace) -> int:
    action = args.workflows_action
    if action == "validate":
        return _validate(args.files)
    if action == "test":
        return _test(args.file, args.contact, args.start)
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
