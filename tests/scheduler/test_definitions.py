"""Loading and validating workflow definitions: every rejection names file, line and reason."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from services.scheduler.workflow.conditions import contact_view, evaluate
from services.scheduler.workflow.definition import DefinitionError, load_directory, load_file, load_text
from services.scheduler.workflow.durations import delay_end
from services.scheduler.workflow.model import DelayConfig
from services.scheduler.workflow.template import render
from services.scheduler.workflow.timeline import ab_variant, format_timeline, simulate

REPO = Path(__file__).resolve().parents[2]
WELCOME = REPO / "workflows" / "new_lead_welcome.yaml"

HEADER = "name: t\ntrigger: {type: contact_created}\nsteps:\n"


def issues_of(text: str, source: str = "wf.yaml") -> list[tuple[int, str]]:
    with pytest.raises(DefinitionError) as info:
        load_text(text, source)
    return [(issue.line, issue.reason) for issue in info.value.issues]


def test_welcome_sequence_loads_with_its_graph() -> None:
    definition = load_file(WELCOME)
    assert definition.key == "new_lead_welcome"
    assert definition.first_step == "welcome"
    # Implicit next is the following step; condition branches keep string keys.
    assert definition.next_of("welcome") == "wait_a_day"
    assert definition.steps["replied"].branches == {"true": "thank_email", "false": "reminder"}
    assert definition.next_of("thank_email") == "end"
    assert definition.next_of("tag_cold") == "end"


def test_same_workflow_in_json_is_accepted_and_bare_delay_is_seconds(tmp_path: Path) -> None:
    data = load_file(WELCOME).to_builtins()
    data["steps"][1]["config"] = {"duration": 86400}
    path = tmp_path / "welcome.json"
    path.write_text(json.dumps(data, indent=2))
    definition = load_file(path)
    config = definition.configs["wait_a_day"]
    assert isinstance(config, DelayConfig)
    start = datetime(2026, 1, 1, tzinfo=UTC)
    assert delay_end(config, start) == datetime(2026, 1, 2, tzinfo=UTC)


def test_unknown_step_type_names_its_line() -> None:
    text = HEADER + "  - id: a\n    type: send_sms\n    config: {body: hi}\n  - id: b\n    type: fax\n"
    assert issues_of(text) == [(8, issues_of(text)[0][1])]
    assert "unknown step type 'fax'" in issues_of(text)[0][1]


def test_bad_config_for_step_type() -> None:
    text = HEADER + "  - id: a\n    type: delay\n    config:\n      duration: 2\n      unit: weeks\n"
    [(line, reason)] = issues_of(text)
    assert line == 8
    assert reason.startswith("delay config:") and "weeks" in reason


def test_config_must_match_type_semantics() -> None:
    text = HEADER + "  - id: a\n    type: delay\n    config: {duration: 5, until: '09:00'}\n"
    [(line, reason)] = issues_of(text)
    assert line == 6 and "exactly one of duration" in reason


def test_dangling_branch_target() -> None:
    text = HEADER + (
        "  - id: c\n    type: condition\n    config: {field: x, operator: exists}\n"
        "    branches:\n      true: nowhere\n      false: end\n"
    )
    [(line, reason)] = issues_of(text)
    assert line == 8 and "unknown step 'nowhere'" in reason


def test_unreachable_step() -> None:
    text = HEADER + (
        "  - id: a\n    type: send_sms\n    config: {body: hi}\n    next: end\n"
        "  - id: orphan\n    type: add_tag\n    config: {tag: x}\n"
    )
    [(line, reason)] = issues_of(text)
    assert line == 8 and "'orphan' is unreachable" in reason


def test_cycle_without_delay_rejected_but_cycle_with_delay_allowed() -> None:
    loop = HEADER + (
        "  - id: a\n    type: send_sms\n    config: {body: hi}\n"
        "  - id: b\n    type: add_tag\n    config: {tag: x}\n    next: a\n"
    )
    [(line, reason)] = issues_of(loop)
    assert line == 10 and "cycle without a delay" in reason
    with_delay = HEADER + (
        "  - id: a\n    type: send_sms\n    config: {body: hi}\n"
        "  - id: wait\n    type: delay\n    config: {duration: 1, unit: days}\n    next: a\n"
    )
    assert load_text(with_delay, "ok.yaml").successors("wait") == ["a"]


def test_duplicate_ids_and_reserved_end() -> None:
    text = HEADER + (
        "  - id: a\n    type: add_tag\n    config: {tag: x}\n"
        "  - id: a\n    type: add_tag\n    config: {tag: y}\n"
        "  - id: end\n    type: end\n"
    )
    found = issues_of(text)
    assert (7, "duplicate step id 'a'") in found
    assert any(line == 10 and "reserved" in reason for line, reason in found)


def test_broken_yaml_and_unknown_keys_point_at_lines() -> None:
    [(line, reason)] = issues_of(HEADER + "  - id: a\n    type: end\n   bad indent: [\n")
    assert line >= 6 and reason.startswith("not valid YAML")
    [(line, reason)] = issues_of(HEADER + "  - id: a\n    type: end\n    nxt: b\n")
    assert line == 6 and "nxt" in reason


def test_branch_names_required_per_type() -> None:
    text = HEADER + (
        "  - id: w\n    type: wait_for_reply\n    config: {timeout: 60}\n    branches: {replied: end}\n"
    )
    [(line, reason)] = issues_of(text)
    assert line == 7 and "replied, timeout" in reason


def test_load_directory_keeps_good_files_and_reports_bad(tmp_path: Path) -> None:
    (tmp_path / "good.yaml").write_text(WELCOME.read_text())
    (tmp_path / "bad.yaml").write_text(HEADER + "  - id: a\n    type: nope\n")
    (tmp_path / "notes.txt").write_text("ignored")
    definitions, issues = load_directory(tmp_path)
    assert [d.key for d in definitions] == ["new_lead_welcome"]
    assert [str(i) for i in issues] == [f"{tmp_path / 'bad.yaml'}:5: " + issues[0].reason]


@pytest.mark.parametrize(
    ("field", "operator", "value", "expected"),
    [
        ("source", "equals", "Facebook_Ad", True),
        ("source", "not_equals", "facebook_ad", False),
        ("tags", "contains", "vip", True),
        ("last_sms_reply", "contains", "YES", True),
        ("budget", "greater_than", 1000, True),
        ("budget", "less_than", 1000, False),
        ("budget", "greater_than", "abc", False),
        ("email", "exists", None, False),
        ("email", "exists", False, True),
        ("fields.source", "equals", "facebook_ad", True),
    ],
)
def test_condition_operators(field: str, operator: str, value: object, expected: bool) -> None:
    view = contact_view(
        phone="+15550001111",
        first_name="Ana",
        fields={"source": "facebook_ad", "budget": "2500"},
        tags=["vip"],
        last_sms_reply="yes please",
    )
    assert evaluate(field, operator, value, view) is expected


def test_template_tokens_from_contact_and_custom_fields() -> None:
    view = contact_view(first_name="Ana", fields={"car": "Civic"})
    assert render("Hi {{first_name}}, your {{ car }}{{missing}}!", view) == "Hi Ana, your Civic!"
    with pytest.raises(DefinitionError, match="malformed"):
        load_text(HEADER + "  - id: a\n    type: send_sms\n    config: {body: 'Hi {{first_name'}\n", "t.yaml")


def test_ab_split_is_sticky_and_weighted() -> None:
    weights = {"a": 80.0, "b": 20.0}
    picks = [ab_variant(weights, "wf", "split", f"1555000{i:04d}") for i in range(2000)]
    assert picks == [ab_variant(weights, "wf", "split", f"1555000{i:04d}") for i in range(2000)]
    share = picks.count("a") / len(picks)
    assert 0.75 < share < 0.85


def test_delay_until_time_of_day_in_timezone() -> None:
    config = DelayConfig(until="09:00", timezone="America/New_York")
    # 15:00 UTC is 10:00 in New York (EST): the next 09:00 is tomorrow, 14:00 UTC.
    now = datetime(2026, 1, 5, 15, 0, tzinfo=UTC)
    assert delay_end(config, now) == datetime(2026, 1, 6, 14, 0, tzinfo=UTC)
    early = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)  # 07:00 local
    assert delay_end(config, early) == datetime(2026, 1, 5, 14, 0, tzinfo=UTC)


def test_dry_run_timeline_follows_both_branches() -> None:
    definition = load_file(WELCOME)
    start = datetime(2026, 1, 1, 10, tzinfo=UTC)
    silent = simulate(definition, {"first_name": "Ana", "phone": "+15551234567"}, start)
    assert [e.step_id for e in silent] == [
        "welcome",
        "wait_a_day",
        "replied",
        "reminder",
        "wait_two_days",
        "tag_cold",
        "end",
    ]
    assert silent[-1].at == datetime(2026, 1, 4, 10, tzinfo=UTC)
    assert "Hi Ana, thanks" in silent[0].summary
    replied = simulate(definition, {"first_name": "Ana", "last_sms_reply": "yes"}, start)
    assert [e.step_id for e in replied][2:] == ["replied", "thank_email", "end"]
    text = format_timeline(silent, start)
    assert "T+3d" in text and "add tag 'cold_lead'" in text


# --- issue 11: http URLs, on_error, YAML limits ------------------------------------------


@pytest.mark.parametrize(
    "url", ["{{website}}", "https://{{host}}/hook", "https://api.example.com{{path}}", "ftp://example.com/x"]
)
def test_http_url_whose_scheme_or_host_comes_from_a_token_is_refused(url: str) -> None:
    text = HEADER + f'  - id: call\n    type: http\n    config:\n      url: "{url}"\n'
    [(line, reason)] = issues_of(text)
    assert line == 6
    assert reason.startswith("http step 'call': url")


def test_http_url_tokens_in_path_and_query_are_allowed() -> None:
    text = HEADER + '  - id: call\n    type: http\n    config: {url: "https://x.example/a/{{id}}?q={{q}}"}\n'
    assert load_text(text, "wf.yaml").configs["call"]


def test_on_error_must_name_a_step_and_counts_for_reachability() -> None:
    steps = (
        "  - id: call\n    type: http\n    config: {url: 'https://x.example/'}\n    on_error: {target}\n"
        "  - id: done\n    type: end\n"
        "  - id: failed\n    type: add_tag\n    config: {tag: failed}\n"
    )
    definition = load_text(HEADER + steps.replace("{target}", "failed"), "wf.yaml")
    assert definition.steps["call"].on_error == "failed"
    assert issues_of(HEADER + steps.replace("{target}", "nowhere")) == [
        (7, "step 'call' goes to unknown step 'nowhere'")
    ]
    loop = (
        HEADER + "  - id: call\n    type: http\n    config: {url: 'https://x.example/'}\n    on_error: call\n"
    )
    [(line, reason)] = issues_of(loop)
    assert line == 7 and reason.startswith("cycle without a delay")


def test_billion_laughs_is_refused_before_expanding() -> None:
    import time
    import tracemalloc

    levels = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for prev, name in zip("abcdefgh", "bcdefghi", strict=True):
        levels.append(f"{name}: &{name} [" + ",".join([f"*{prev}"] * 9) + "]")
    text = HEADER.replace("steps:\n", "") + "\n".join(levels) + "\nsteps: *i\n"
    tracemalloc.start()
    started = time.monotonic()
    try:
        assert issues_of(text) == [(4, "YAML aliases (*a) are not allowed in workflows")]
        assert time.monotonic() - started < 2
        assert tracemalloc.get_traced_memory()[1] < 20_000_000
    finally:
        tracemalloc.stop()


def test_document_size_and_depth_are_bounded() -> None:
    big = HEADER + "  - id: a\n    type: send_sms\n    config: {body: '" + "x" * 300_000 + "'}\n"
    [(line, reason)] = issues_of(big)
    assert line == 1 and reason.startswith("document too large")
    deep = (
        HEADER
        + "  - id: a\n    type: update_field\n    config: {field: f, value: "
        + "[" * 50
        + "]" * 50
        + "}\n"
    )
    [(line, reason)] = issues_of(deep)
    assert line == 6 and reason == "nested deeper than 32 levels"
    assert issues_of("[" * 5000 + "]" * 5000, "wf.json") == [(1, "nested deeper than 32 levels")]
