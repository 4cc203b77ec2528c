"""`/_sim/...`: what tests and operators use to inspect and steer the simulator. Each view reads
the simulator's state from its app, so one blueprint serves every simulator a test starts."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from flask import Blueprint, current_app, request

from devtools.graphsim.state import PROFILE_FIELDS, EchoConfig, ErrorRule, SimState

bp = Blueprint("sim", __name__, url_prefix="/_sim")


def _state() -> SimState:
    return current_app.extensions["graphsim"]


def _int_or_none(value: Any) -> int | None:
    return None if value is None else int(value)


def _str_or_none(value: Any) -> str | None:
    return None if value is None else str(value)


@bp.get("/health")
def health():
    return {"ok": True}


@bp.get("/requests")
def list_requests():
    state = _state()
    since = int(request.args.get("since", 0))
    with state.lock:
        items = [dict(entry) for entry in state.requests if entry["seq"] > since]
    return {"requests": items}


@bp.delete("/requests")
def clear_requests():
    state = _state()
    with state.lock:
        state.requests.clear()
    return {"ok": True}


def _rule_of(data: dict) -> ErrorRule:
    """The rule a POST describes; TypeError or ValueError when a number is not one."""
    return ErrorRule(
        code=_int_or_none(data.get("code")),
        subcode=_int_or_none(data.get("subcode")),
        message=data.get("message"),
        type=data.get("type"),
        status=_int_or_none(data.get("status")),
        times=_int_or_none(data["times"]) if "times" in data else 1,
        recipient_id=_str_or_none(data.get("recipient_id")),
        delay_ms=int(data.get("delay_ms") or 0),
        endpoint=data.get("endpoint", "messages"),
    )


def _rule_problem(rule: ErrorRule) -> str | None:
    """Why a rule cannot be kept, or None."""
    if rule.times is not None and rule.times < 1:
        return "times is at least 1 (null: until cleared)"
    if rule.code is None and not rule.delay_ms:
        return "give a code to fail with, a delay_ms, or both"
    if rule.endpoint not in ("messages", "profile", "any"):
        return "endpoint is messages, profile or any"
    return None


@bp.post("/errors")
def add_error():
    state = _state()
    data = request.get_json(silent=True) or {}
    try:
        rule = _rule_of(data)
    except (TypeError, ValueError):
        return {"error": "code, subcode, status, times and delay_ms are integers"}, 400
    problem = _rule_problem(rule)
    if problem:
        return {"error": problem}, 400
    with state.lock:
        state.rules.append(rule)
    return {"rule": asdict(rule)}, 201


@bp.get("/errors")
def list_errors():
    state = _state()
    with state.lock:
        return {"rules": [asdict(rule) for rule in state.rules]}


@bp.delete("/errors")
def clear_errors():
    state = _state()
    with state.lock:
        state.rules.clear()
    return {"ok": True}


@bp.post("/window")
def set_window():
    state = _state()
    data = request.get_json(silent=True) or {}
    if not data.get("recipient_id"):
        return {"error": "recipient_id is required"}, 400
    recipient_id = str(data["recipient_id"])
    with state.lock:
        if data.get("closed", True):
            state.closed_windows.add(recipient_id)
        else:
            state.closed_windows.discard(recipient_id)
        closed = sorted(state.closed_windows)
    return {"closed": closed}


@bp.delete("/window")
def open_all_windows():
    state = _state()
    with state.lock:
        state.closed_windows.clear()
    return {"closed": []}


@bp.post("/profiles")
def set_profile():
    state = _state()
    data = request.get_json(silent=True) or {}
    if not data.get("id"):
        return {"error": "id is required"}, 400
    igsid = str(data["id"])
    fields = {key: data[key] for key in PROFILE_FIELDS if key in data}
    with state.lock:
        state.profiles[igsid] = {**state.profiles.get(igsid, {}), **fields}
        return {"profile": {"id": igsid, **state.profiles[igsid]}}


@bp.delete("/profiles")
def clear_profiles():
    state = _state()
    with state.lock:
        state.profiles.clear()
    return {"ok": True}


@bp.post("/echo")
def set_echo():
    state = _state()
    data = request.get_json(silent=True) or {}
    if not data.get("url") and state.echo is None:
        return {"error": "url is required"}, 400
    current = state.echo or EchoConfig(url=data["url"], secret="")
    state.echo = EchoConfig(
        url=data.get("url", current.url),
        secret=data.get("secret", current.secret),
        app_id=str(data.get("app_id", current.app_id)),
        enabled=bool(data.get("enabled", True)),
        delay_ms=int(data.get("delay_ms", current.delay_ms)),
    )
    return {"echo": {**asdict(state.echo), "secret": "<redacted>"}}


@bp.delete("/echo")
def disable_echo():
    state = _state()
    if state.echo is not None:
        state.echo.enabled = False
    return {"ok": True}


@bp.get("/echoes")
def list_echoes():
    state = _state()
    with state.lock:
        return {"echoes": list(state.echoes)}


@bp.post("/fetch")
def set_fetching():
    """Fetch sent attachments' URLs as Meta does (`{"enabled": true}`), or stop."""
    state = _state()
    data = request.get_json(silent=True) or {}
    state.fetch_attachments = bool(data.get("enabled", True))
    return {"fetch_attachments": state.fetch_attachments}


@bp.get("/fetches")
def list_fetches():
    """What each fetch of an attachment got: url, status, length, content_type, sha256, ok."""
    state = _state()
    with state.lock:
        return {"fetches": [dict(item) for item in state.fetches]}


@bp.post("/reset")
def reset():
    _state().reset()
    return {"ok": True}
