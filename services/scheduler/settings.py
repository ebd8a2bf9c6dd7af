"""Scheduler settings (REPLYLINE_* environment variables, see docs/scheduler.md)."""

from __future__ import annotations

from typing import Literal

import msgspec

from libs.llm import LlmSettings
from libs.settings import CommonSettings

OverduePolicy = Literal["fire_late", "skip", "escalate"]

#: What an overdue timer does, per kind (docs/scheduler.md explains each choice).
DEFAULT_OVERDUE_POLICY: dict[str, OverduePolicy] = {
    "draft_expiry": "fire_late",
    "workflow_delay": "fire_late",
    "reply_timeout": "fire_late",
    "quiet_hours": "fire_late",
    "no_response": "escalate",
    # Handing a thread back to the AI late is harmless; never handing it back is not.
    "takeover_quiet": "fire_late",
    # A lead's burst still needs its one draft, however late (the drafter was waiting).
    "burst_debounce": "fire_late",
}


class SchedulerSettings(CommonSettings, frozen=True, kw_only=True):
    #: Folder of workflow definitions (YAML/JSON) loaded at start-up.
    workflows_dir: str = "workflows"
    #: Folder of email templates (``<name>.yaml`` with subject and body).
    email_templates_dir: str = "workflows/email_templates"
    #: A timer that fires more than this late is overdue and follows its kind's policy.
    timer_overdue_after_s: float = 60.0
    #: Per-kind override of :data:`DEFAULT_OVERDUE_POLICY` (JSON in the environment).
    timer_overdue_policy: dict[str, OverduePolicy] = msgspec.field(default_factory=dict)
    #: Concurrent claims while a burst of timers comes due.
    timer_fire_concurrency: int = 128
    #: Longest sleep of the firing loop (it also wakes on every change).
    timer_max_sleep_s: float = 1.0
    #: Lifetime of the purge marker a fired or cancelled timer leaves in the bucket.
    timer_marker_ttl_s: float = 120.0
    #: How often a replica saves a snapshot of its timer view (object store
    #: ``timers_snapshot``) so that a restart reads it plus the changes since,
    #: instead of every pending timer (0 = never).
    timer_snapshot_interval_s: float = 60.0
    #: Below this many pending timers no snapshot is saved: a full load is fast enough.
    timer_snapshot_min_pending: int = 20_000
    # SMTP for send_email steps; without smtp_host the email is logged, not sent.
    smtp_host: str = ""
    smtp_port: int = 25
    smtp_username: str = ""
    smtp_password: str = ""
    smtp_starttls: bool = False
    smtp_use_tls: bool = False
    smtp_from: str = "Replyline <noreply@localhost>"
    smtp_timeout_s: float = 30.0
    #: A caller who rings again within this window after a missed call that fired the
    #: ``call_missed`` trigger is not texted back again (docs/missed-calls.md).
    call_textback_window_s: float = 1800.0
    #: Days without a lead reply after our last message before the outcome is no_response.
    no_response_days: float = 7.0
    #: Tags that settle a conversation's outcome when added.
    outcome_tags: dict[str, str] = msgspec.field(
        default_factory=lambda: {
            "goal_reached": "success",
            "booked": "success",
            "qualified": "qualified",
            "disqualified": "unqualified",
            "unqualified": "unqualified",
        }
    )
    #: Hosts, IPs or CIDRs http steps may call although they are internal (loopback,
    #: private, link-local...); everything internal is refused otherwise.
    http_step_allow: tuple[str, ...] = ()
    #: ``REPLYLINE_OUTCOME_LLM_*``: optional LLM judgement of conversation outcomes
    #: (libs/llm.py); off while base_url is empty, the rules apply alone then.
    outcome_llm: LlmSettings = LlmSettings()

    def overdue_policy(self, kind: str) -> OverduePolicy:
        return self.timer_overdue_policy.get(kind, DEFAULT_OVERDUE_POLICY.get(kind, "fire_late"))
