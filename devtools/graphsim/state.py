"""What the simulator remembers between requests: the requests it received, the errors it was
told to answer with, closed reply windows, profiles and where to send echoes."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

PROFILE_FIELDS = (
    "name",
    "username",
    "profile_pic",
    "is_user_follow_business",
    "is_business_follow_user",
)
DEFAULT_APP_ID = "555000111222333"


@dataclass
class ErrorRule:
    """The next `times` calls (all of them when None) fail with `code`, or only answer late."""

    code: int | None = None
    subcode: int | None = None
    message: str | None = None
    type: str | None = None
    status: int | None = None
    times: int | None = 1
    recipient_id: str | None = None
    delay_ms: int = 0
    endpoint: str = "messages"  # or "profile"

    def matches(self, endpoint: str, recipient_id: str | None) -> bool:
        if self.endpoint not in (endpoint, "any"):
            return False
        return self.recipient_id is None or self.recipient_id == recipient_id


@dataclass
class EchoConfig:
    url: str
    secret: str
    app_id: str = DEFAULT_APP_ID
    enabled: bool = True
    delay_ms: int = 0


@dataclass
class SimState:
    """What the simulator remembers; shared by the request threads, so guarded by a lock."""

    echo: EchoConfig | None = None
    requests: list[dict] = field(default_factory=list)
    echoes: list[dict] = field(default_factory=list)
    rules: list[ErrorRule] = field(default_factory=list)
    closed_windows: set[str] = field(default_factory=set)
    profiles: dict[str, dict] = field(default_factory=dict)
    # Fetch sent attachments' URLs as Meta does (fetch.py), and what those fetches got.
    fetch_attachments: bool = False
    fetches: list[dict] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    _sequence: int = 0

    def record(self, entry: dict) -> dict:
        with self.lock:
            self._sequence += 1
            entry["seq"] = self._sequence
            self.requests.append(entry)
        return entry

    def take_rule(self, endpoint: str, recipient_id: str | None) -> ErrorRule | None:
        with self.lock:
            for rule in self.rules:
                if rule.matches(endpoint, recipient_id):
                    if rule.times is not None:
                        rule.times -= 1
                        if rule.times <= 0:
                            self.rules.remove(rule)
                    return rule
        return None

    def reset(self) -> None:
        with self.lock:
            self.requests.clear()
            self.echoes.clear()
            self.rules.clear()
            self.closed_windows.clear()
            self.profiles.clear()
            self.fetches.clear()
