"""What a rule may say, checked field by field before anything is written.

A rule body is the API's shape (`{name, enabled, position, trigger, conditions, actions,
once_per_ticket}`). Every refusal is an `InvalidField` naming the path of the value, such as
`conditions[1].op`, so the API answers 422 with it and the console shows the message next to the
input. Ids must be the brand's own: another brand's team, agent, channel, tag or canned reply is
refused exactly like one that does not exist.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from helpdesk.accounts.models import Agent, Team
from helpdesk.accounts.service import role_in
from helpdesk.automations.engine import (
    ACTION_STATUSES,
    ACTIONS,
    CHOICES,
    EVENTS,
    FIELD_OPS,
    FIELDS,
    IDLE_STATUSES,
)
from helpdesk.canned.models import CannedReply
from helpdesk.channels.models import Channel
from helpdesk.errors import InvalidField, ValidationError
from helpdesk.extensions import db
from helpdesk.tickets import tags
from helpdesk.tickets.models import Tag

IDLE_EVENT = "ticket_idle"
LIST_OPS = ("in", "not_in")
MAX_NAME = 120
MAX_TEXT = 500
MAX_NOTE = 5000
MAX_CONDITIONS = 20
MAX_ACTIONS = 10
MAX_LIST = 50
MAX_ID = 2**31 - 1  # an INTEGER key: a larger id would overflow PostgreSQL's column
MAX_MINUTES = 30 * 24 * 60  # idle periods and snoozes: up to 30 days
Check = Callable[[int, str, Any], Any]
RULE_KEYS = frozenset(
    {"name", "enabled", "position", "trigger", "conditions", "actions", "once_per_ticket"}
)


# Plain values -------------------------------------------------------------------------------------


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _whole(path: str, value: Any, low: int, high: int, what: str) -> int:
    if not _is_int(value) or not low <= value <= high:
        raise InvalidField(path, f"{what}: a whole number from {low} to {high}")
    return value


def _choice(path: str, value: Any, choices: tuple[str, ...]) -> str:
    if not isinstance(value, str) or value not in choices:
        raise InvalidField(path, f"one of {', '.join(choices)}, not {value!r}")
    return value


def _storable(path: str, value: str) -> str:
    """Text every backend can store: PostgreSQL refuses NUL and lone surrogates."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidField(path, "must be valid Unicode text") from None
    if "\x00" in value:
        raise InvalidField(path, "must not contain NUL characters")
    return value


def _text(path: str, value: Any, limit: int, what: str = "text") -> str:
    if not isinstance(value, str) or not value.strip():
        raise InvalidField(path, f"write the {what}")
    if len(value) > limit:
        raise InvalidField(path, f"the {what} has at most {limit} characters")
    return _storable(path, value).strip()


def _bool(path: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise InvalidField(path, f"true or false, not {value!r}")
    return value


# The brand's objects ------------------------------------------------------------------------------


def _id(path: str, value: Any, what: str) -> int:
    if not _is_int(value) or not 0 < value <= MAX_ID:
        raise InvalidField(path, f"the id of a {what} of this brand, not {value!r}")
    return value


def _channel(brand_id: int, path: str, value: Any) -> int:
    channel = db.session.get(Channel, _id(path, value, "channel"))
    if channel is None or channel.brand_id != brand_id:
        raise InvalidField(path, f"this brand has no channel {value}")
    return value


def _team(brand_id: int, path: str, value: Any) -> int:
    team = db.session.get(Team, _id(path, value, "team"))
    if team is None or team.brand_id != brand_id:
        raise InvalidField(path, f"this brand has no team {value}")
    return value


def _agent(brand_id: int, path: str, value: Any) -> int:
    agent = db.session.get(Agent, _id(path, value, "agent"))
    if agent is None or role_in(agent.id, brand_id) is None:
        raise InvalidField(path, f"this brand has no agent {value}")
    if not agent.active:
        raise InvalidField(path, f"the agent {agent.name} is not active")
    return value


def _member(brand_id: int, path: str, value: Any) -> int:
    """An agent of the brand for a condition: one who left may still be a ticket's assignee."""
    if role_in(_id(path, value, "agent"), brand_id) is None:
        raise InvalidField(path, f"this brand has no agent {value!r}")
    return value


def _tag(brand_id: int, path: str, value: Any) -> int | str:
    """A tag of the brand by id, or by name in any case (kept as the tag spells it)."""
    if isinstance(value, str):
        try:
            found = tags.find_tag(brand_id, _storable(path, value))
        except ValidationError:
            found = None
        if found is None:
            raise InvalidField(path, f"this brand has no tag {value!r}")
        return found.name
    tag = db.session.get(Tag, _id(path, value, "tag"))
    if tag is None or tag.brand_id != brand_id:
        raise InvalidField(path, f"this brand has no tag {value}")
    return value


def _canned_reply(brand_id: int, path: str, value: Any) -> int:
    reply = db.session.get(CannedReply, _id(path, value, "canned reply"))
    if reply is None or reply.brand_id != brand_id or reply.owner_id is not None:
        raise InvalidField(path, f"this brand has no shared canned reply {value}")
    return value


def _recipient(brand_id: int, path: str, value: Any) -> str:
    """`agent:ID` or `team:ID` of the brand."""
    kind, _, raw = value.partition(":") if isinstance(value, str) else ("", "", "")
    if kind not in ("agent", "team") or not raw.isdigit() or len(raw) > 9:
        raise InvalidField(path, f"agent:ID or team:ID, not {value!r}")
    check = _member if kind == "agent" else _team
    check(brand_id, path, int(raw))
    return f"{kind}:{int(raw)}"


def _or_none(check: Check) -> Check:
    """None stands for "nobody" (an unassigned ticket, no team)."""
    return lambda brand_id, path, value: None if value is None else check(brand_id, path, value)


def _enum(kind: str, choices: tuple[str, ...] | None = None) -> Check:
    allowed = choices or CHOICES[kind]
    return lambda _brand_id, path, value: _choice(path, value, allowed)


# A condition's value of each kind (engine.FIELDS), checked for the brand:
# (brand_id, path, value) -> the value to store. None is "nobody" for an agent or a team.
CONDITION_KINDS: dict[str, Check] = {
    "text": lambda _b, path, value: _text(path, value, MAX_TEXT),
    "folder": _enum("folder"),
    "channel": _channel,
    "tag": _tag,
    "priority": _enum("priority"),
    "status": _enum("status"),
    "agent": _or_none(_member),
    "team": _or_none(_team),
    "open_closed": _enum("open_closed"),
    "bool": lambda _b, path, value: _bool(path, value),
}
# An action's value of each kind (engine.ACTIONS).
ACTION_KINDS: dict[str, Check] = {
    "team": _team,
    "agent": _agent,
    "tag": _tag,
    "priority": _enum("priority"),
    "status": _enum("status", ACTION_STATUSES),
    "minutes": lambda _b, path, value: _whole(path, value, 1, MAX_MINUTES, "minutes"),
    "canned_reply": _canned_reply,
    "text": lambda _b, path, value: _text(path, value, MAX_NOTE, "note"),
    "recipient": _recipient,
}


# Parts of a rule ----------------------------------------------------------------------------------


def _object(path: str, value: Any, keys: frozenset[str]) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise InvalidField(path, "an object")
    unknown = sorted(set(value) - keys)
    if unknown:
        raise InvalidField(f"{path}.{unknown[0]}" if path else unknown[0], "unknown field")
    return value


def _list(path: str, value: Any, most: int, least: int = 0) -> list[Any]:
    if not isinstance(value, list):
        raise InvalidField(path, "a list")
    if not least <= len(value) <= most:
        raise InvalidField(path, f"from {least} to {most} items")
    return value


def clean_trigger(value: Any) -> dict[str, Any]:
    """`{event, idle_minutes?, idle_status?}`: the idle ones belong to ticket_idle alone."""
    trigger = _object("trigger", value, frozenset({"event", "idle_minutes", "idle_status"}))
    event = _choice("trigger.event", trigger.get("event"), EVENTS)
    minutes, status = trigger.get("idle_minutes"), trigger.get("idle_status")
    if event != IDLE_EVENT:
        for key in ("idle_minutes", "idle_status"):
            if trigger.get(key) is not None:
                raise InvalidField(f"trigger.{key}", "only a ticket_idle trigger has it")
        return {"event": event, "idle_minutes": None, "idle_status": None}
    minutes = _whole("trigger.idle_minutes", minutes, 1, MAX_MINUTES, "minutes idle")
    status = _choice("trigger.idle_status", status, IDLE_STATUSES)
    return {"event": event, "idle_minutes": minutes, "idle_status": status}


def clean_condition(brand_id: int, index: int, value: Any) -> dict[str, Any]:
    path = f"conditions[{index}]"
    condition = _object(path, value, frozenset({"field", "op", "value"}))
    field = _choice(f"{path}.field", condition.get("field"), tuple(FIELDS))
    op = _choice(f"{path}.op", condition.get("op"), FIELD_OPS[field])
    if "value" not in condition:
        raise InvalidField(f"{path}.value", "give a value")
    check, raw = CONDITION_KINDS[FIELDS[field]], condition["value"]
    if op in LIST_OPS:
        items = _list(f"{path}.value", raw, MAX_LIST, least=1)
        return {
            "field": field,
            "op": op,
            "value": [check(brand_id, f"{path}.value[{n}]", item) for n, item in enumerate(items)],
        }
    return {"field": field, "op": op, "value": check(brand_id, f"{path}.value", raw)}


def clean_action(brand_id: int, index: int, value: Any) -> dict[str, Any]:
    path = f"actions[{index}]"
    action = _object(path, value, frozenset({"type", "value"}))
    kind = ACTIONS[_choice(f"{path}.type", action.get("type"), tuple(ACTIONS))]
    check = ACTION_KINDS[kind]
    return {"type": action["type"], "value": check(brand_id, f"{path}.value", action.get("value"))}


def _lists(brand_id: int, body: Mapping[str, Any]) -> dict[str, Any]:
    """The conditions and actions given, each checked with its index in the path."""
    values: dict[str, Any] = {}
    if "conditions" in body:
        items = _list("conditions", body["conditions"], MAX_CONDITIONS)
        values["conditions"] = [clean_condition(brand_id, n, c) for n, c in enumerate(items)]
    if "actions" in body:
        items = _list("actions", body["actions"], MAX_ACTIONS, least=1)
        values["actions"] = [clean_action(brand_id, n, a) for n, a in enumerate(items)]
    return values


def clean_rule(brand_id: int, data: Any, partial: bool = False) -> dict[str, Any]:
    """The columns a rule body sets, every one checked; `partial` (PATCH) allows leaving any out."""
    body = _object("", data, RULE_KEYS)
    missing = [key for key in ("name", "trigger", "actions") if key not in body]
    if missing and not partial:
        raise InvalidField(missing[0], "required")
    values: dict[str, Any] = {}
    if "name" in body:
        values["name"] = _text("name", body["name"], MAX_NAME, "name")
    for key in ("enabled", "once_per_ticket"):
        if key in body:
            values[key] = _bool(key, body[key])
    if "position" in body:
        values["position"] = _whole("position", body["position"], 0, 100_000, "position")
    if "trigger" in body:
        values.update(clean_trigger(body["trigger"]))
    values.update(_lists(brand_id, body))
    return values


# From a form: text typed or picked, turned into the API's values before the same checks ---------

_TRUE, _FALSE = ("true", "yes", "1", "on"), ("false", "no", "0", "off")
_NUMBERED = ("channel", "agent", "team", "tag", "canned_reply", "minutes")


def typed(kind: str, text: str, nobody: bool = False) -> Any:
    """A form's text as the kind's value; text that does not parse is passed on for the checks
    to refuse in words (an id that is not a number, a yes that is not yes or no). `nobody`: a
    blank or "none" agent or team is None (a condition on an unassigned ticket)."""
    text = text.strip()
    if kind in _NUMBERED:
        if text.isdigit() and len(text) <= 9:
            return int(text)
        if nobody and text.lower() in ("", "none"):
            return None
        return text
    if kind == "bool":
        lowered = text.lower()
        return True if lowered in _TRUE else False if lowered in _FALSE else text
    return text


def typed_condition(field: str, op: str, values: list[str]) -> Any:
    """A condition's value from the form: a list for `in`/`not_in` (several picks, or commas)."""
    kind = FIELDS.get(field, "text")
    if op in LIST_OPS:
        parts = [part for value in values for part in value.split(",") if part.strip()]
        return [typed(kind, part, nobody=True) for part in parts]
    return typed(kind, values[0] if values else "", nobody=True)


def typed_action(action: str, text: str) -> Any:
    return typed(ACTIONS.get(action, "text"), text)
