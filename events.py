"""Security events: one JSON line each for operators, and each user's recent activity in MongoDB."""

from __future__ import annotations

import datetime as dt
import functools
import json
import logging
from typing import Any

import store as store_module
from clock import Clock, utcnow

events_log = logging.getLogger("tokenauth.events")

# What a person sees of their own account ("Recent activity"); other events are only logged.
USER_EVENTS = frozenset(
    {
        "user_registered",
        "login_succeeded",
        "login_failed",
        "password_changed",
        "logout",
        "session_revoked",
        "session_ended",
        "refresh_reuse_detected",
        "email_changed",
        "email_verified",
        "password_reset",
        "mfa_failed",
        "totp_enabled",
        "totp_removed",
        "recovery_code_used",
        "recovery_codes_regenerated",
        "passkey_added",
        "passkey_removed",
        "passkey_used",
        "passkey_sign_count_regressed",
    }
)
MAX_USER_AGENT = 512


def log_event(event: str, **fields: Any) -> None:
    """One JSON line per event; callers pass ids and addresses, never secrets."""
    time = utcnow().isoformat(timespec="milliseconds").replace("+00:00", "Z")
    line = {"event": event, "time": time, **fields}
    events_log.info(json.dumps(line, default=str, sort_keys=True))


class EventLog:
    """Logs every event, and keeps a user's own ones for `retention_days` (TTL index)."""

    def __init__(
        self,
        store: store_module.Store | None = None,
        *,
        retention_days: int = 90,
        clock: Clock = utcnow,
    ) -> None:
        self.store = store
        self.retention = dt.timedelta(days=retention_days)
        self.clock = clock

    def record(self, event: str, *, user_agent: str | None = None, **fields: Any) -> None:
        """Log the event; keep it for its user when it is one they should see."""
        log_event(event, **fields)
        user_id = fields.get("user_id")
        if self.store is None or not user_id or event not in USER_EVENTS:
            return
        now = self.clock()
        kept: dict[str, Any] = {"time": now, "expires_at": now + self.retention}
        if fields.get("address"):
            kept["address"] = fields["address"]
        if user_agent:
            kept["user_agent"] = user_agent[:MAX_USER_AGENT]
        self.store.add_event(user_id, event, fields=kept)

    def page(
        self, user_id: str, *, limit: int, after: str | None
    ) -> tuple[list[dict[str, Any]], str | None]:
        """A user's events, newest first: event, time, and address and device where known."""
        events, next_cursor = self.store.page_events(user_id, limit=limit, after=after)
        shown = []
        for event in events:
            item = {"event": event["event"], "time": event["time"]}
            if event.get("address"):
                item["address"] = event["address"]
            device = describe_device(event.get("user_agent"))
            if device:
                item["device"] = device
            shown.append(item)
        return shown, next_cursor


@functools.lru_cache(maxsize=1024)
def describe_device(user_agent: str | None) -> str | None:
    """A readable device ("Chrome 131 on Linux") from a User-Agent; None when unknown."""
    if not user_agent:
        return None
    # Parsed when read, never on a login: the first parse loads the rule set (~0.1 s).
    from ua_parser import parse

    result = parse(user_agent)
    agent = result.user_agent
    if agent is None or agent.family == "Other":
        return None
    name = f"{agent.family} {agent.major}" if agent.major else agent.family
    system = result.os
    if system is not None and system.family != "Other":
        return f"{name} on {system.family}"
    return name
