"""The audit log: /settings/audit for admins and GET /api/v1/audit-events for admin tokens.

Rows are recorded here through `audit.record` directly: the services' own calls are tested with
the services."""

from __future__ import annotations

from datetime import timedelta

import pytest

from helpdesk.accounts.actor import Actor
from helpdesk.accounts.models import Role
from helpdesk.accounts.tokens import ApiToken
from helpdesk.audit import service as audit
from helpdesk.audit.models import AuditEvent
from helpdesk.extensions import db
from helpdesk.types import utcnow
from tests.factories import at
from tests.helpers.api import Client, error_of, token_for
from tests.helpers.console import signed_in
from tests.helpers.world import World


@pytest.fixture
def worlds():
    """Two brands, each with a few audit rows; the first's rows at known times."""
    acme, other = World("acme"), World("other")
    admin = Actor.for_agent(acme.admin, acme.brand.id, Role.ADMIN)
    audit.record(
        admin,
        acme.brand.id,
        "tag.created",
        "tag",
        7,
        audit.created({"name": "vip", "colour": "#ff0000"}),
        label="vip",
        at=at("2026-03-01 09:00"),
    )
    audit.record(
        Actor.for_agent(acme.manager, acme.brand.id, Role.MANAGER),
        acme.brand.id,
        "team.updated",
        "team",
        3,
        {"assignment": ["manual", "round_robin"]},
        label="Support",
        at=at("2026-03-02 09:00"),
    )
    audit.record(
        None,
        acme.brand.id,
        "sla_policy.deleted",
        "sla_policy",
        4,
        audit.removed({"name": "Gold"}),
        label="Gold",
        at=at("2026-03-03 09:00"),
    )
    audit.record(
        admin,
        acme.brand.id,
        "webhook.created",
        "webhook",
        9,
        {"url": [None, "https://hooks.example.test"], "secret": [None, "whsec_TOPSECRET"]},
        label="hooks",
        at=at("2026-03-04 09:00"),
    )
    audit.record(
        Actor.for_agent(other.admin, other.brand.id, Role.ADMIN),
        other.brand.id,
        "tag.deleted",
        "tag",
        99,
        audit.removed({"name": "other-brand-tag"}),
        label="other-brand-tag",
        at=at("2026-03-02 12:00"),
    )
    db.session.commit()
    return acme, other


def _page(client, query: str = "", status: int = 200) -> str:
    response = client.get(f"/settings/audit{query}")
    assert response.status_code == status, response.get_data(as_text=True)[:300]
    return response.get_data(as_text=True)


# The page ----------------------------------------------------------------------------------------


def test_an_admin_sees_the_brands_changes_newest_first_and_no_other_brands(client, worlds):
    acme, _other = worlds
    html = _page(signed_in(client, acme.admin))

    order = [html.index(f'id="event-{n}"') for n in _ids("webhook", "sla_policy", "team", "tag")]
    assert order == sorted(order)
    assert "other-brand-tag" not in html
    assert "SLA policy deleted" in html and "Acme Manager" in html
    assert "(system)" in html and "(agent #" in html
    assert "assignment</strong>:" in html and "manual</span> → <span" in html
    assert "Team “Support”" in html and "#3" in html
    # Times in the brand's zone (Europe/Berlin: UTC+1 in March).
    assert "2026-03-02 10:00" in html


def _ids(*target_types: str) -> list[int]:
    return [
        db.session.scalar(
            db.select(AuditEvent.id).where(
                AuditEvent.target_type == kind, AuditEvent.target_label != "other-brand-tag"
            )
        )
        for kind in target_types
    ]


def test_a_secret_never_reaches_the_page(client, worlds):
    acme, _other = worlds
    html = _page(signed_in(client, acme.admin))
    assert "whsec_TOPSECRET" not in html
    assert "(changed)" in html


def test_the_filters_narrow_the_rows(client, worlds):
    acme, _other = worlds
    signed_in(client, acme.admin)

    by_agent = _page(client, f"?actor=agent:{acme.manager.id}")
    by_system = _page(client, "?actor=system")
    by_kind = _page(client, "?target_type=tag")
    by_action = _page(client, "?action=DELETED")
    by_dates = _page(client, "?since=2026-03-02&until=2026-03-03")

    assert "Team updated" in by_agent and "Tag created" not in by_agent
    assert "SLA policy deleted" in by_system and "Team updated" not in by_system
    assert "Tag created" in by_kind and "Team updated" not in by_kind
    assert "SLA policy deleted" in by_action and "Tag created" not in by_action
    assert "Team updated" in by_dates and "SLA policy deleted" in by_dates
    assert "Tag created" not in by_dates and "Webhook created" not in by_dates
    assert "Acme Manager" in by_agent  # the select lists the brand's agents
    assert "Other Admin" not in by_agent


def test_a_token_filter_finds_changes_made_through_the_api(client, worlds):
    acme, _other = worlds
    token_for(acme.brand)
    token = db.session.scalar(db.select(ApiToken).where(ApiToken.brand_id == acme.brand.id))
    audit.record(Actor.for_token(token), acme.brand.id, "tag.updated", "tag", 7, {}, "vip")
    db.session.commit()
    signed_in(client, acme.admin)

    html = _page(client, "?actor=token")

    assert "Tag updated" in html and "(API token" in html
    assert "Team updated" not in html


def test_bad_filters_are_refused_next_to_their_field(client, worlds):
    acme, _other = worlds
    signed_in(client, acme.admin)

    html = _page(client, "?since=yesterday&actor=robot&target_type=planet", status=422)

    assert 'id="since-error"' in html and "Enter a date" in html
    assert 'id="actor-error"' in html
    assert 'id="target_type-error"' in html
    assert 'id="event-' not in html
    for edge in ("?until=9999-12-31", "?since=0001-01-01"):
        assert "Enter a date" in _page(client, edge, status=422)


def test_html_in_values_is_escaped_and_long_values_are_cut(client, worlds):
    acme, _other = worlds
    long_text = "word " * 40
    audit.record(
        None,
        acme.brand.id,
        "canned_reply.updated",
        "canned_reply",
        5,
        {"body": ["<script>alert(1)</script>", long_text]},
        label="<b>greeting</b>",
    )
    db.session.commit()

    html = _page(signed_in(client, acme.admin))

    assert "<script>alert(1)</script>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "<b>greeting</b>" not in html and "&lt;b&gt;greeting&lt;/b&gt;" in html
    assert "<details" in html and long_text.strip() in html
    assert long_text[:80] + "…" in html


def test_older_pages_follow_each_other_without_repeating(client, worlds):
    acme, _other = worlds
    start = utcnow() - timedelta(days=1)
    for n in range(55):
        audit.record(None, acme.brand.id, "tag.updated", "tag", n, {}, f"t{n}", at=start)
    db.session.commit()
    signed_in(client, acme.admin)

    first = _page(client, "?action=tag.updated")
    assert first.count('id="event-') == 50
    older = first.split('rel="next" href="')[1].split('"')[0].replace("&amp;", "&")
    second = _page(client, older.removeprefix("/settings/audit"))

    assert second.count('id="event-') == 5
    assert 'rel="next"' not in second
    seen = {part.split('"')[0] for part in (first + second).split('id="event-')[1:]}
    assert len(seen) == 55


def test_a_forged_cursor_is_refused(client, worlds):
    acme, _other = worlds
    html = _page(signed_in(client, acme.admin), "?cursor=not-a-cursor", status=422)
    assert "start again from the newest" in html


@pytest.mark.parametrize("who", ["agent", "manager"])
def test_agents_and_managers_may_not_read_the_log(client, worlds, who):
    acme, _other = worlds
    signed_in(client, getattr(acme, who))
    assert client.get("/settings/audit").status_code == 403


def test_another_brands_admin_sees_only_their_own(client, worlds):
    _acme, other = worlds
    html = _page(signed_in(client, other.admin))
    assert "other-brand-tag" in html
    assert "Support" not in html and "Gold" not in html


# The API ---------------------------------------------------------------------------------------


def test_the_api_lists_the_brands_events_newest_first_in_the_contract_shape(client, worlds):
    acme, _other = worlds
    api = Client(client, token_for(acme.brand))

    body = api.get("/audit-events").get_json()

    assert [item["action"] for item in body["items"]] == [
        "webhook.created",
        "sla_policy.deleted",
        "team.updated",
        "tag.created",
    ]
    assert body["next_cursor"] is None
    team = body["items"][2]
    assert set(team) == {"id", "at", "actor", "action", "target", "changes"}
    assert team["at"] == "2026-03-02T09:00:00Z"
    assert team["actor"] == {"type": "agent", "id": acme.manager.id, "name": "Acme Manager"}
    assert team["target"]["type"] == "team" and team["target"]["id"] == 3
    assert team["changes"] == {"assignment": ["manual", "round_robin"]}
    assert body["items"][1]["actor"] == {"type": "system", "id": None, "name": "the system"}
    assert body["items"][3]["changes"]["name"] == [None, "vip"]


def test_a_secret_passed_to_record_never_appears_in_the_api(client, worlds):
    acme, _other = worlds
    audit.record(
        None,
        acme.brand.id,
        "api_token.created",
        "api_token",
        1,
        {"token": [None, "hd_SECRETVALUE"], "settings": {"new_password": "hunter2hunter2"}},
    )
    db.session.commit()
    api = Client(client, token_for(acme.brand))

    text = api.get("/audit-events?limit=100").get_data(as_text=True)

    assert "whsec_TOPSECRET" not in text
    assert "hd_SECRETVALUE" not in text and "hunter2hunter2" not in text
    assert "(changed)" in text


def test_the_api_filters(client, worlds):
    acme, _other = worlds
    api = Client(client, token_for(acme.brand))

    def actions(query: str) -> list[str]:
        response = api.get(f"/audit-events?{query}")
        assert response.status_code == 200, response.get_json()
        return [item["action"] for item in response.get_json()["items"]]

    assert actions(f"actor=agent:{acme.manager.id}") == ["team.updated"]
    assert actions("actor=system") == ["sla_policy.deleted"]
    assert actions("actor=agent") == ["webhook.created", "team.updated", "tag.created"]
    assert actions("actor=token") == []
    assert actions("target_type=tag") == ["tag.created"]
    assert actions("since=2026-03-02T09:00:00Z") == [
        "webhook.created",
        "sla_policy.deleted",
        "team.updated",
    ]
    assert actions("since=2026-03-02T10:30:00%2B01:00") == [
        "webhook.created",
        "sla_policy.deleted",
    ]
    assert actions("action=created") == ["webhook.created", "tag.created"]


@pytest.mark.parametrize(
    "query, field",
    [
        ("actor=robot", "actor"),
        ("actor=agent:abc", "actor"),
        ("actor=system:1", "actor"),
        ("actor=agent:99999999999", "actor"),
        ("since=yesterday", "since"),
        ("target_type=planet", "target_type"),
        ("limit=0", "limit"),
        ("cursor=forged", "cursor"),
    ],
)
def test_bad_api_filters_are_422_naming_the_field(client, worlds, query, field):
    acme, _other = worlds
    api = Client(client, token_for(acme.brand))

    response = api.get(f"/audit-events?{query}")

    assert response.status_code == 422
    assert field in error_of(response).get("fields", {})


def test_the_api_pages_with_a_cursor(client, worlds):
    acme, _other = worlds
    api = Client(client, token_for(acme.brand))

    first = api.get("/audit-events?limit=3").get_json()
    second = api.get(f"/audit-events?limit=3&cursor={first['next_cursor']}").get_json()

    assert len(first["items"]) == 3 and first["next_cursor"]
    assert [item["action"] for item in second["items"]] == ["tag.created"]
    assert second["next_cursor"] is None


@pytest.mark.parametrize("role", [Role.AGENT, Role.MANAGER])
def test_only_an_admin_token_reads_the_log(client, worlds, role):
    acme, _other = worlds
    response = Client(client, token_for(acme.brand, role)).get("/audit-events")
    assert response.status_code == 403
    assert error_of(response)["code"] == "forbidden"


def test_a_token_sees_only_its_brands_events(client, worlds):
    _acme, other = worlds
    body = Client(client, token_for(other.brand)).get("/audit-events").get_json()
    assert [item["target"]["id"] for item in body["items"]] == [99]


def test_without_a_token_the_log_is_401(client, worlds):
    assert Client(client, None).get("/audit-events").status_code == 401


# The service -------------------------------------------------------------------------------------


def test_secret_names_are_masked_whatever_the_caller_passes():
    changes = audit.diff(
        {"webhook_secret": "a", "name": "x", "nested": {"password": "p"}},
        {"webhook_secret": "b", "name": "y", "nested": {"password": "q"}},
    )
    assert changes["webhook_secret"] == [audit.HIDDEN, audit.HIDDEN]
    assert changes["name"] == ["x", "y"]
    assert changes["nested"] == [{"password": audit.HIDDEN}, {"password": audit.HIDDEN}]


def test_actions_read_as_words():
    assert audit.action_words("api_token.revoked") == "API token revoked"
    assert audit.action_words("agent.role_changed") == "Agent role changed"
    assert audit.action_words("business_hours.updated") == "Business hours updated"
