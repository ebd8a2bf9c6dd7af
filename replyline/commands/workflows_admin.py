"""``replyline workflows enrollments|deactivate|reactivate NAME --api URL --token T`` and
``replyline workflows test NAME --api ...`` (the dry run of the stored workflow, answered by
the scheduler through ingest's API)."""

from __future__ import annotations

import argparse
import json
import sys
import urllib.error
from typing import Any
from urllib.parse import quote, urlencode

ADMIN_ACTIONS = ("enrollments", "deactivate", "reactivate")
STATUSES = ("active", "waiting", "paused", "completed", "ended")


def add_actions(actions: Any, api_arguments: Any) -> None:
    enrollments = actions.add_parser(
        "enrollments", help="contacts enrolled in a stored workflow, with status and current step (--api)"
    )
    enrollments.add_argument("name")
    enrollments.add_argument("--status", choices=STATUSES)
    enrollments.add_argument("--limit", type=int, default=200)
    enrollments.add_argument("--json", action="store_true", help="one JSON object per line")
    api_arguments(enrollments)
    for action, what in (("deactivate", "stop enrolling new contacts"), ("reactivate", "enroll again")):
        parser = actions.add_parser(action, help=f"{what} in a stored workflow (--api)")
        parser.add_argument("name")
        api_arguments(parser)


def run(args: argparse.Namespace, call: Any, failure: Any) -> int:
    """``call(args, method, path, body, content_type)`` and ``failure(status, raw)`` are the
    HTTP helpers of replyline/commands/workflows.py."""
    if not args.api or not args.token:
        print(f"error: workflows {args.workflows_action} needs --api and --token", file=sys.stderr)
        return 2
    name = quote(args.name if args.workflows_action != "test" else str(args.file), safe="")
    try:
        if args.workflows_action == "test":
            body = json.dumps({"contact": args.contact_data, "start": args.start}).encode()
            status, raw = call(args, "POST", f"/api/workflows/{name}/test", body, "application/json")
        elif args.workflows_action == "enrollments":
            query = {"limit": str(args.limit), **({"status": args.status} if args.status else {})}
            status, raw = call(args, "GET", f"/api/workflows/{name}/enrollments?" + urlencode(query))
        else:
            status, raw = call(args, "POST", f"/api/workflows/{name}/{args.workflows_action}")
    except (urllib.error.URLError, TimeoutError, ConnectionError) as exc:
        print(f"error: cannot reach {args.api}: {exc}", file=sys.stderr)
        return 1
    if status != 200:
        return int(failure(status, raw))
    data = json.loads(raw)
    if args.workflows_action == "test":
        print(f"# {data['name']} v{data['version']} (stored) - dry run, nothing is sent")
        print(data["text"])
    elif args.workflows_action == "enrollments":
        _print_enrollments(data, args.json)
    else:
        state = "active" if data["active"] else "inactive (enrolls nobody new)"
        print(f"workflow {data['name']!r} is {state}")
    return 0


def _print_enrollments(data: dict[str, Any], as_json: bool) -> None:
    rows = data.get("enrollments", [])
    for row in rows:
        if as_json:
            print(json.dumps(row))
        else:
            step = row.get("current_step") or "-"
            waiting = f" (waiting for {row['waiting_for']})" if row.get("waiting_for") else ""
            print(f"{row['phone']:<16} v{row['version']:<3} {row['status']:<10} {step}{waiting}")
    if not as_json:
        state = "" if data.get("active", True) else " (workflow is deactivated)"
        print(f"{len(rows)} enrollment(s) in {data['name']!r}{state}")
