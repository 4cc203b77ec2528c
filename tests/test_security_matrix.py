"""The security review of issue 7 as tests, over every route of the app's URL map.

Each route is classified in ACCESS below (public, signed-in console, dashboard, API token,
webhook signature...) with the least role it needs; a route missing from the table fails the
suite, so a new route is reviewed before it ships. The matrix then asks every route as a
stranger, an agent, a manager and an admin. Around it: ids of another brand in query strings and
forms, another brand's data never shown, sessions (fixation, sign-out), throttling, API token
revocation, secrets kept out of logs, responses and the database, the canned-reply sandbox end to
end, escaping in every template, and the outgoing-webhook target rules test_outgoing.py leaves.

Brand isolation of ids in paths is walked by test_console_security.py (console) and test_api.py
(API); test_path_ids_are_walked_for_brand_isolation makes sure no route with an id escapes both.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import secrets
import time
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from flask import template_rendered
from sqlalchemy import func, select

from helpdesk import crypto
from helpdesk.accounts import invitations
from helpdesk.accounts.actor import Actor
from helpdesk.accounts.models import Role
from helpdesk.accounts.service import add_team_member, create_agent, create_team
from helpdesk.accounts.tokens import create_token
from helpdesk.automations.models import AutomationRule
from helpdesk.brands.models import Brand
from helpdesk.canned import service as canned
from helpdesk.channels.models import Channel, DataDeletionRequest
from helpdesk.channels.service import connect_channel
from helpdesk.dm.models import Conversation, Message, MessageKind
from helpdesk.errors import ValidationError
from helpdesk.extensions import db
from helpdesk.intake import service as intake
from helpdesk.intake.models import EventStatus, WebhookEvent
from helpdesk.media import uploads
from helpdesk.notifications.models import NotificationKind
from helpdesk.notifications.service import notify
from helpdesk.outgoing import service as outgoing
from helpdesk.sla import service as sla
from helpdesk.tickets import notes, routing, tags
from helpdesk.tickets.models import Note, Tag, Ticket
from tests.conftest import table_counts
from tests.factories import BrandFactory, ContactFactory
from tests.helpers.console import RecordingArgs, csrf_token, login, signed_in
from tests.helpers.rows import changed, snapshot
from tests.helpers.webhooks import sign
from tests.helpers.world import World, receive

API = "/api/v1"

# How a route is guarded.
PUBLIC = "public"  # anyone: health, metrics (restricted at the proxy), sign-in, the API document
SESSION = "session"  # signed in, no brand needed: signing out
CONSOLE = "console"  # signed in, with a brand: an HTML page or form (strangers go to /login)
CONSOLE_JSON = "console json"  # the same, answering JSON (strangers get a 401)
DASHBOARD = "dashboard"  # signed in, with a brand, manager or above
API_TOKEN = "api token"  # a bearer token of the brand, with the role given
SIGNATURE = "signature"  # X-Hub-Signature-256 over the body
VERIFY_TOKEN = "verify token"  # the subscription handshake's hub.verify_token
SIGNED_REQUEST = "signed request"  # Meta's callbacks: a signed_request form field (else 400)
OAUTH_RETURN = "oauth return"  # Instagram Login's return: the admin's session and a live state
CODE_LINK = "code link"  # public behind an unguessable code in the path (unknown: 404)

A, M, AD = Role.AGENT, Role.MANAGER, Role.ADMIN

# Every endpoint of the app: its guard and the least role it needs. A new route must be added
# here, which is the moment to decide who may call it.
ACCESS: dict[str, tuple[str, Role | None]] = {
    "static": (PUBLIC, None),
    "metrics": (PUBLIC, None),
    "main.home": (PUBLIC, None),
    "main.ping": (PUBLIC, None),
    "main.healthz": (PUBLIC, None),
    "main.readyz": (PUBLIC, None),
    "api-docs.openapi_json": (PUBLIC, None),
    "auth.login": (PUBLIC, None),
    "auth.logout": (SESSION, None),
    "auth.logout_confirm": (SESSION, None),
    # The token in the path is the credential: anyone holding the link may use it, once.
    "auth.invitation": (PUBLIC, None),
    "auth.password_reset": (PUBLIC, None),
    "webhooks.receive": (SIGNATURE, None),
    "webhooks.verify_subscription": (VERIFY_TOKEN, None),
    # Instagram Login comes back here from instagram.com: the callback checks the admin and the
    # state itself (signed out: its own 401 page); Meta's callbacks are signed; a deletion's
    # status page is public behind its unguessable code.
    "oauth.instagram_callback": (OAUTH_RETURN, None),
    "oauth.deauthorize": (SIGNED_REQUEST, None),
    "oauth.data_deletion": (SIGNED_REQUEST, None),
    "oauth.data_deletion_status": (CODE_LINK, None),
    # The console: every member of the brand; unblocking a contact takes a manager.
    "console.inbox": (CONSOLE, A),
    "console.contact_page": (CONSOLE, A),
    "console.contact_save": (CONSOLE, A),
    "console.contact_export": (CONSOLE, AD),
    "console.contact_erase": (CONSOLE, AD),
    "console.media": (CONSOLE, A),
    "console.media_thumbnail": (CONSOLE, A),
    "console.bulk_action": (CONSOLE, A),
    "console.search": (CONSOLE, A),
    "console.notifications_panel": (CONSOLE, A),
    "console.notification_read": (CONSOLE, A),
    "console.notifications_read_all": (CONSOLE, A),
    "console.availability": (CONSOLE, A),
    "console.switch_brand": (CONSOLE, A),
    "console.conversation": (CONSOLE, A),
    "console.assign": (CONSOLE, A),
    "console.take": (CONSOLE, A),
    "console.unassign": (CONSOLE, A),
    "console.status": (CONSOLE, A),
    "console.priority": (CONSOLE, A),
    "console.team": (CONSOLE, A),
    "console.add_tag": (CONSOLE, A),
    "console.remove_tag": (CONSOLE, A),
    "console.request_action": (CONSOLE, A),
    "console.move": (CONSOLE, A),
    "console.notification_level": (CONSOLE, A),
    "console.block_contact": (CONSOLE, A),
    "console.unblock_contact": (CONSOLE, M),
    "console.reply": (CONSOLE, A),
    "console.note": (CONSOLE, A),
    "console.react": (CONSOLE, A),
    "console.leave": (CONSOLE, A),
    "console.reveal_vanish": (CONSOLE, A),
    "console.confirm_vanish_read": (CONSOLE, A),
    "console.thread_newer": (CONSOLE, A),
    "console.thread_message": (CONSOLE, A),
    "console.thread_note": (CONSOLE, A),
    "console.canned_search": (CONSOLE_JSON, A),
    "console.canned_render": (CONSOLE_JSON, A),
    "console.mention_candidates": (CONSOLE_JSON, A),
    "console.inbox_updates": (CONSOLE_JSON, A),
    "console.live_poll": (CONSOLE_JSON, A),
    "console.live_stream": (CONSOLE_JSON, A),
    "console.presence": (CONSOLE_JSON, A),
    # The dashboard: managers and admins.
    "dashboard.index": (DASHBOARD, M),
    "dashboard.backlog_json": (DASHBOARD, M),
    "dashboard.export_csv": (DASHBOARD, M),
    # The API (its module docstring): agent tokens, but settings need more.
    "api_conversations.list_conversations": (API_TOKEN, A),
    "api_conversations.get_conversation": (API_TOKEN, A),
    "api_conversations.list_messages": (API_TOKEN, A),
    "api_conversations.send_message": (API_TOKEN, A),
    "api_conversations.answer_request": (API_TOKEN, A),
    "api_conversations.react": (API_TOKEN, A),
    "api_conversations.unreact": (API_TOKEN, A),
    "api_inbound.inbound": (API_TOKEN, A),
    "api_tickets.list_tickets": (API_TOKEN, A),
    "api_tickets.get_ticket": (API_TOKEN, A),
    "api_tickets.patch_ticket": (API_TOKEN, A),
    "api_tickets.add_note": (API_TOKEN, A),
    "api_tickets.add_tag": (API_TOKEN, A),
    "api_tickets.remove_tag": (API_TOKEN, A),
    "api_canned_replies.list_replies": (API_TOKEN, A),
    "api_canned_replies.get_reply": (API_TOKEN, A),
    "api_canned_replies.render_reply": (API_TOKEN, A),
    "api_canned_replies.create_reply": (API_TOKEN, M),
    "api_canned_replies.patch_reply": (API_TOKEN, M),
    "api_canned_replies.delete_reply": (API_TOKEN, M),
    "api_metrics.metrics_summary": (API_TOKEN, M),  # the dashboard's figures: managers
    "api_settings.get_business_hours": (API_TOKEN, A),
    "api_settings.put_business_hours": (API_TOKEN, M),
    "api_settings.list_policies": (API_TOKEN, M),
    "api_settings.create_policy": (API_TOKEN, M),
    "api_settings.get_policy": (API_TOKEN, M),
    "api_settings.patch_policy": (API_TOKEN, M),
    "api_settings.delete_policy": (API_TOKEN, M),
    "api_agents.list_agents": (API_TOKEN, A),
    "api_agents.patch_agent": (API_TOKEN, M),
    "api_agents.create_agent": (API_TOKEN, AD),
    "api_agents.invite_again": (API_TOKEN, AD),
    "api_webhook_subscriptions.list_subscriptions": (API_TOKEN, AD),
    "api_webhook_subscriptions.create_subscription": (API_TOKEN, AD),
    "api_webhook_subscriptions.delete_subscription": (API_TOKEN, AD),
    # The settings console: each view's least role (@page), as API.md's table gives it.
    "settings.account": (CONSOLE, A),
    "settings.update_account": (CONSOLE, A),
    "settings.change_password": (CONSOLE, A),
    "settings.index": (CONSOLE, M),
    "settings.agents": (CONSOLE, AD),
    "settings.update_agent": (CONSOLE, AD),
    "settings.deactivate_agent": (CONSOLE, AD),
    "settings.reinvite_agent": (CONSOLE, AD),
    "settings.reset_link": (CONSOLE, AD),
    "settings.reactivate_agent": (CONSOLE, AD),
    "settings.invite_agent": (CONSOLE, AD),
    "settings.api_tokens": (CONSOLE, AD),
    "settings.create_api_token": (CONSOLE, AD),
    "settings.revoke_api_token": (CONSOLE, AD),
    "settings.audit_log": (CONSOLE, AD),
    "settings.brand": (CONSOLE, AD),
    "settings.save_brand": (CONSOLE, AD),
    "settings.business_hours": (CONSOLE, M),
    "settings.save_business_hours": (CONSOLE, M),
    "settings.add_holiday": (CONSOLE, M),
    "settings.import_holidays": (CONSOLE, M),
    "settings.remove_holiday": (CONSOLE, M),
    "settings.canned_replies": (CONSOLE, A),
    "settings.create_canned_reply": (CONSOLE, A),
    "settings.edit_canned_reply": (CONSOLE, A),
    "settings.update_canned_reply": (CONSOLE, A),
    "settings.delete_canned_reply": (CONSOLE, A),
    "settings.channels": (CONSOLE, AD),
    "settings.privacy": (CONSOLE, AD),
    "settings.save_privacy": (CONSOLE, AD),
    "settings.create_sla_policy": (CONSOLE, M),
    "settings.sla_policies": (CONSOLE, M),
    "settings.update_sla_policy": (CONSOLE, M),
    "settings.delete_sla_policy": (CONSOLE, M),
    "settings.move_sla_policy_down": (CONSOLE, M),
    "settings.move_sla_policy_up": (CONSOLE, M),
    "settings.create_tag": (CONSOLE, M),
    "settings.csat": (CONSOLE, M),
    "settings.save_csat": (CONSOLE, M),
    "settings.tags": (CONSOLE, M),
    "settings.automations": (CONSOLE, M),
    "settings.new_automation": (CONSOLE, M),
    "settings.create_automation": (CONSOLE, M),
    "settings.edit_automation": (CONSOLE, M),
    "settings.update_automation": (CONSOLE, M),
    "settings.toggle_automation": (CONSOLE, M),
    "settings.move_automation_up": (CONSOLE, M),
    "settings.move_automation_down": (CONSOLE, M),
    "settings.delete_automation": (CONSOLE, M),
    "settings.automation_dry_run": (CONSOLE, M),
    "settings.update_tag": (CONSOLE, M),
    "settings.delete_tag": (CONSOLE, M),
    "settings.create_team": (CONSOLE, M),
    "settings.teams": (CONSOLE, M),
    "settings.update_team": (CONSOLE, M),
    "settings.connect_instagram": (CONSOLE, AD),
    "settings.disconnect_channel": (CONSOLE, AD),
    "settings.add_routing_rule": (CONSOLE, M),
    "settings.delete_routing_rule": (CONSOLE, M),
    "settings.delete_team": (CONSOLE, M),
    "settings.create_webhook": (CONSOLE, AD),
    "settings.webhooks": (CONSOLE, AD),
    "settings.delete_webhook": (CONSOLE, AD),
    "settings.test_webhook": (CONSOLE, AD),
    # The settings API: reads for the roles that see them, writes as API.md gives.
    "api_audit.list_events": (API_TOKEN, AD),
    "api_brand.get_settings": (API_TOKEN, M),
    "api_brand.patch_settings": (API_TOKEN, M),
    "api_automations.create_automation": (API_TOKEN, M),
    "api_automations.delete_automation": (API_TOKEN, M),
    "api_automations.get_automation": (API_TOKEN, M),
    "api_automations.list_automations": (API_TOKEN, M),
    "api_automations.patch_automation": (API_TOKEN, M),
    "api_tags.create_tag": (API_TOKEN, M),
    "api_tags.delete_tag": (API_TOKEN, M),
    "api_tags.get_tag": (API_TOKEN, A),
    "api_tags.list_tags": (API_TOKEN, A),
    "api_tags.patch_tag": (API_TOKEN, M),
    "api_teams.create_team": (API_TOKEN, M),
    "api_teams.delete_team": (API_TOKEN, M),
    "api_teams.get_team": (API_TOKEN, A),
    "api_teams.list_teams": (API_TOKEN, A),
    "api_teams.patch_team": (API_TOKEN, M),
    "api_tokens.create_token": (API_TOKEN, AD),
    "api_tokens.list_tokens": (API_TOKEN, AD),
    "api_tokens.revoke_token": (API_TOKEN, AD),
    "api_channels.list_channels": (API_TOKEN, M),
    "api_contacts.list_contacts": (API_TOKEN, A),
    "api_contacts.get_contact": (API_TOKEN, A),
    "api_contacts.patch_contact": (API_TOKEN, A),
    "api_contacts.export_contact": (API_TOKEN, AD),
    "api_contacts.erase_contact": (API_TOKEN, AD),
    # Agents' files: uploaded by agents and tokens, fetched by Meta behind a signed token.
    "uploads.console_upload": (CONSOLE_JSON, A),
    "uploads.public_file": (CODE_LINK, None),
    "api_uploads.create_upload": (API_TOKEN, A),
}
# Rules finer than a route: (method, path with {ids}, JSON body or form, least role).
FINER: list[tuple[str, str, dict | None, Role]] = [
    ("PATCH", API + "/agents/{agent_id}", {"role": "admin"}, AD),
    ("GET", "/inbox?folder=hidden", None, AD),
    # The brand's settings are an admin's; a manager may change only the survey.
    ("PATCH", API + "/brand", {"name": "Renamed"}, AD),
    ("PATCH", API + "/brand", {"csat": {"enabled": True}}, M),
    # Anyone keeps personal canned replies; a shared one takes a manager.
    ("POST", "/settings/canned-replies", {"shortcode": "finer", "body": "Hi", "shared": "1"}, M),
]
BRAND_SCOPED = (CONSOLE, CONSOLE_JSON, DASHBOARD, API_TOKEN)
SIGNS_OUT = ("/logout",)  # allowed, and answered with the way back to /login


def methods_of(rule) -> list[str]:
    return sorted(rule.methods - {"HEAD", "OPTIONS"})


def all_rules(app) -> list:
    return sorted(app.url_map.iter_rules(), key=lambda r: (r.rule, r.endpoint))


def test_every_route_is_classified(app):
    endpoints = {rule.endpoint for rule in app.url_map.iter_rules()}
    unclassified = sorted(endpoints - set(ACCESS))
    assert not unclassified, f"classify these routes in ACCESS (who may call them?): {unclassified}"
    stale = sorted(set(ACCESS) - endpoints)
    assert not stale, f"ACCESS names routes that no longer exist: {stale}"


def test_path_ids_are_walked_for_brand_isolation(app):
    """test_console_security walks console and auth rules with ids, test_api the API's; a route
    with an id anywhere else (a new blueprint) would be checked by neither."""
    for rule in all_rules(app):
        kind, _role = ACCESS[rule.endpoint]
        if kind not in BRAND_SCOPED or not rule.arguments:
            continue
        # test_settings_roles walks the settings console's paths the same way.
        console = rule.endpoint.startswith(
            ("console.", "auth.", "settings.")
        ) and not rule.rule.startswith((API, "/webhooks/", "/static"))
        api = rule.rule.startswith(API + "/")
        assert console or api, f"{rule.rule}: walk it for other brands' ids (no test does)"


# The site: two brands, a client per role, a token per role --------------------------------------


class Site:
    def __init__(self, app):
        self.app = app
        self.own = World("own")
        self.other = World("other")
        own = self.own
        self.team = create_team(own.brand, "Own team")
        add_team_member(self.team, own.agent)
        self.reply = canned.create(own.brand, own.manager, "hi", "Hi", "Hi!", shared=True)
        self.policy = sla.create_policy(own.brand, None, "own", 0, {}, {"resolution_min": 60})
        self.automation = AutomationRule(brand_id=own.brand.id, name="own", event="ticket_created")
        db.session.add(self.automation)
        tags.add_tag(db.session.get(Ticket, own.conversation.current_ticket_id), "vip", None)
        notes.add_note(
            db.session.get(Ticket, own.conversation.current_ticket_id), own.agent, "Own note"
        )
        self.subscription, _secret = outgoing.create_subscription(
            own.brand, None, "https://93.184.216.34/hooks", ["ticket.created"]
        )
        self.notifications = {
            role: notify(
                agent.id,
                own.brand.id,
                NotificationKind.MENTION,
                "Mentioned",
                conversation_id=own.conversation.id,
            ).id
            for role, agent in self.agents().items()
        }
        self.invitation = invitations.invite(
            Actor.system(own.brand.id), own.brand, "invited@example.test"
        )[1]
        self.reset = invitations.start_reset(own.agent.email)[1]
        db.session.commit()
        made = {role: create_token(own.brand, f"{role.value} token", role) for role in Role}
        self.tokens = {role: secret for role, (_row, secret) in made.items()}
        self.rule = routing.add_rule(Actor.system(own.brand.id), own.brand, self.team.id).id
        self.subject = create_agent("subject@own.test", "Subject", own.brand)[0].id
        self.spare_token = create_token(own.brand, "spare token", Role.AGENT)[0].id  # to revoke
        db.session.commit()
        self.clients = {role: self.sign_in(role) for role in Role}
        self.anonymous = app.test_client()
        self.anonymous_csrf = csrf_token(self.anonymous)

    def agents(self) -> dict[Role, Any]:
        return {A: self.own.agent, M: self.own.manager, AD: self.own.admin}

    def sign_in(self, role: Role):
        client = self.app.test_client()
        signed_in(client, self.agents()[role])
        client.csrf = csrf_token(client, "/inbox")
        return client

    def ids(self, role: Role | None = None) -> dict[str, Any]:
        """Plain values, read once: loading a row here would open a transaction in the test's
        session, which requests share (SQLite would then lock them out)."""
        if not hasattr(self, "_ids") or self._ids_for is not self.own:
            own = self.own
            self._ids_for = own
            self._ids = {
                "conversation_id": own.conversation.id,
                "contact_id": own.conversation.contact_id,
                "message_id": own.message.id,
                "ticket_id": own.conversation.current_ticket_id,
                "note_id": db.session.scalar(
                    select(func.min(Note.id))
                    .join(Ticket, Ticket.id == Note.ticket_id)
                    .where(Ticket.conversation_id == own.conversation.id)
                )
                or 0,
                "reply_id": self.reply.id,
                "policy_id": self.policy.id,
                "automation_id": self.automation.id,
                "agent_id": own.agent.id,
                "subscription_id": self.subscription.id,
                "team_id": self.team.id,
                "rule_id": self.rule,
                "tag_id": db.session.scalar(
                    select(func.min(Tag.id)).where(Tag.brand_id == own.brand.id)
                ),
                "token_id": self.spare_token,
                "channel_id": own.channel.id,
                "brand_id": own.brand.id,
                "name": "vip",
                "filename": "console.css",
                "code": "unknown-code",
                "token": "unknown-token",
                "invitation_token": self.invitation,
                "reset_token": self.reset,
                "media_id": 1,  # who may ask; test_media.py asks what each one gets
            }
            db.session.rollback()
        return {**self._ids, "notification_id": self.notifications[role or AD]}

    def path(self, rule, role: Role | None = None) -> str:
        values = self.ids(role)
        if rule.endpoint.startswith("settings."):  # deactivating a signed-in client ends it
            values["agent_id"] = self.subject
        return rule.build({name: values[name] for name in rule.arguments})[1]


@pytest.fixture
def site(app, monkeypatch) -> Site:
    for name in ("enqueue_delivery", "enqueue_reaction"):
        monkeypatch.setattr(f"helpdesk.web.api.conversations.{name}", lambda *_args: True)
    monkeypatch.setitem(app.config, "LIVE_STREAM_SECONDS", 0.1)
    return Site(app)


FORMS = {  # a plausible form per console POST: the matrix is about who, not about what
    "console.availability": {"availability": "away"},
    "console.switch_brand": {},
    "console.status": {"status": "pending"},
    "console.priority": {"priority": "high"},
    "console.add_tag": {"name": "matrix"},
    "console.remove_tag": {"name": "matrix"},
    "console.request_action": {"action": "accept"},
    "console.move": {"folder": "general"},
    "console.notification_level": {"level": "muted"},
    "console.reply": {"text": "On its way"},
    "console.note": {"text": "checked"},
    "console.react": {"emoji": "👍"},
    "console.bulk_action": {"bulk_action": "resolve"},
    "console.presence": {"state": "viewing"},
}


def idle() -> None:
    """End the test's transaction before a request: requests share the test's session, but
    /metrics reads in an app context of its own, which SQLite would keep waiting."""
    db.session.rollback()


def _ask(site: Site, rule, method: str, who: Role | None):
    """One request as `who` (None: a stranger), as that kind of caller would send it."""
    kind, _least = ACCESS[rule.endpoint]
    path = site.path(rule, who)
    idle()
    if kind == API_TOKEN:
        headers = {"Authorization": f"Bearer {site.tokens[who]}"} if who else {}
        return site.app.test_client().open(path, method=method, headers=headers, json={})
    client = site.clients[who] if who else site.anonymous
    if kind == SIGNATURE:
        return client.open(path, method=method, data=b'{"object": "instagram", "entry": []}')
    if kind == VERIFY_TOKEN:
        return client.open(path + "?hub.mode=subscribe&hub.challenge=1&hub.verify_token=x")
    data = None
    if method != "GET":
        form = dict(FORMS.get(rule.endpoint, {}))
        if rule.endpoint == "console.switch_brand":
            form["brand_id"] = str(site.ids()["brand_id"])
        if rule.endpoint == "console.bulk_action":
            form["ids"] = str(site.ids()["conversation_id"])
        data = {"csrf_token": getattr(client, "csrf", site.anonymous_csrf), **form}
    return client.open(path, method=method, data=data, buffered=False)


def _verdict(kind: str, least: Role | None, who: Role | None, method: str, response) -> str | None:
    """What is wrong with this answer, or None."""
    status = response.status_code
    location = response.headers.get("Location", "")
    to_login = status == 302 and "/login" in location
    if status >= 500 and not (status == 503 and response.request.path == "/readyz"):
        return f"server error {status}"
    if kind == PUBLIC:
        if method == "POST" and status in (400, 401):  # a sign-in without credentials
            return None
        if to_login or status in (401, 403):
            return f"public, yet {status} {location}"
        if who is None and method == "GET" and status not in (200, 302, 503):
            return f"public page answered {status}"
        return None
    if kind == SIGNATURE:
        return None if status == 401 else f"unsigned, yet {status}"
    if kind == VERIFY_TOKEN:
        return None if status == 403 else f"wrong verify token, yet {status}"
    if kind == SIGNED_REQUEST:
        return None if status == 400 else f"no signed_request, yet {status}"
    if kind == OAUTH_RETURN:  # without a state it started, nobody connects anything
        return None if status in (400, 401) else f"no state, yet {status}"
    if kind == CODE_LINK:
        return None if status == 404 else f"an unknown code, yet {status}"
    if who is None:
        if kind in (CONSOLE_JSON, API_TOKEN):
            return None if status == 401 else f"stranger got {status}, not 401"
        return None if to_login else f"stranger got {status} {location}, not sent to /login"
    if least is not None and who.rank < least.rank:
        return None if status == 403 else f"{who.value} got {status}, not 403"
    if status in (401, 403) or (to_login and response.request.path not in SIGNS_OUT):
        return f"{who.value} may, yet got {status} {location}"
    return None


@pytest.mark.slow
def test_every_route_answers_each_role_as_classified(app, site):
    failures = []
    asked = 0
    for rule in all_rules(app):
        kind, least = ACCESS[rule.endpoint]
        for method in methods_of(rule):
            for who in (None, A, M, AD):  # refusals first: they must change nothing
                refusal = who is None or (least is not None and who.rank < least.rank)
                before = table_counts() if refusal else None
                db.session.rollback()
                response = _ask(site, rule, method, who)
                asked += 1
                problem = _verdict(kind, least, who, method, response)
                response.close()
                if problem:
                    failures.append(f"{method} {rule.rule} ({rule.endpoint}): {problem}")
                if before is not None and kind in (*BRAND_SCOPED, SESSION):
                    after = table_counts()
                    db.session.rollback()
                    for counts in (before, after):  # a sign-in attempt is counted by design
                        counts.pop("login_attempts", None)
                    if after != before:
                        failures.append(f"{method} {rule.rule}: a refusal changed rows")
                if rule.endpoint == "auth.logout" and who is not None:
                    site.clients[who] = site.sign_in(who)  # signed out by the request
    assert asked > 300
    assert not failures, "\n".join(failures)


@pytest.mark.parametrize(("method", "path", "body", "least"), FINER)
def test_rules_finer_than_a_route(site, method, path, body, least):
    path = path.format(**site.ids())
    for who in Role:
        if path.startswith(API):
            headers = {"Authorization": f"Bearer {site.tokens[who]}"}
            response = site.app.test_client().open(path, method=method, headers=headers, json=body)
        else:
            client = site.clients[who]
            form = {**body, "csrf_token": client.csrf} if body is not None else None
            response = client.open(path, method=method, data=form)
        if who.rank < least.rank:
            assert response.status_code == 403, (who, path, response.status_code)
        else:
            assert response.status_code not in (401, 403), (who, path, response.status_code)


def test_a_console_session_is_no_api_token_and_no_webhook_signature(site):
    admin = site.clients[AD]
    assert admin.get(API + "/tickets").status_code == 401
    assert admin.post(API + "/tickets/1/notes", json={"body": "x"}).status_code == 401
    assert admin.post("/webhooks/instagram", data=b"{}").status_code == 401
    bearer = {"Authorization": f"Bearer {site.tokens[AD]}"}
    stranger = site.app.test_client()
    response = stranger.get("/inbox", headers=bearer)
    assert response.status_code == 302 and "/login" in response.headers["Location"]
    assert stranger.get("/dashboard", headers=bearer).status_code == 302
    assert stranger.get("/canned/search", headers=bearer).status_code == 401


# Ids of another brand in query strings and forms -------------------------------------------------


ID_FIELDS = {  # a name a view reads -> the kind of row it names
    "conversation_id": "conversation",
    "conversation": "conversation",
    "ids": "conversation",
    "reply_to": "message",
    "contact_id": "contact",
    "assignee_id": "agent",
    "team_id": "team",
    "brand_id": "brand",
    "channel": "channel",
    "shown": "conversation",
    "team_ids": "team",
    "agent_ids": "agent",
    "tag_id": "tag",
    "upload_id": "upload",
}
NOT_IDS = {  # names that look like ids but are cursors or free text
    "before", "after", "since", "page", "cursor", "csrf_token", "next", "q", "text", "name",
    "tag", "emoji", "state", "status", "priority", "folder", "level", "action", "bulk_action",
    "availability", "snooze", "snooze_until", "send_at", "attachment_type", "attachment_url",
    "view", "sort", "dir", "sla", "from", "to", "business_hours", "table", "remember", "email",
    "password", "team", "id", "channel_id",
    # The reply form: a one-use token, a watermark of what was seen (compared, never loaded),
    # flags, and the ticket as the page showed it.
    "compose_token", "last_seen_message_id", "split", "confirm", "ticket_state",
    # Settings forms: values, not rows. The audit log's `actor` filters the brand's own rows, so
    # another brand's agent matches nothing (test_audit covers it).
    "notifications", "sign_in_availability", "current_password", "password_confirmation",
    "capacity", "role", "teams_shown", "members_shown", "actor", "target_type", "until",
    "accept_all_requests", "followers_are_known", "hidden_words", "reopen_days", "timezone",
    "weekly.mon", "weekly.tue", "weekly.wed", "weekly.thu", "weekly.fri", "weekly.sat",
    "weekly.sun", "date", "country", "year", "attachments", "body", "shared", "shortcode",
    "title", "retention_days", "first_response_min", "next_response_min", "resolution_min",
    "colour", "keywords", "assignment", "events", "url", "notes", "attr_rows",
    "file",  # an agent's upload: bytes, not a row
    "csat_enabled", "csat_question", "csat_delay_minutes",  # the survey's settings
    # The automation editor: a rule's parts, whose ids automations.validation checks against
    # the brand (another brand's id is a 422 naming the row: test_settings_automations).
    "template", "trigger_event", "idle_minutes", "idle_status", "enabled", "once_per_ticket",
    "condition_field", "condition_op", "condition_value", "action_type", "action_value",
}  # fmt: skip


# The action under which a name counts: an assignee is read for every bulk action, used by one.
FOREIGN_FORMS = {
    ("console.bulk_action", "assignee_id"): {"bulk_action": "assign"},
    # The settings forms change teams and members only when the form showed them.
    ("settings.update_agent", "team_ids"): {"teams_shown": "1"},
    ("settings.update_team", "agent_ids"): {"members_shown": "1", "name": "Renamed"},
}
# Names that only pick among the brand's own rows (the live inbox's hints): another brand's id
# picks nothing, so the answer is a 200 that does not draw it.
HINTS = {("console.inbox_updates", "ids"), ("console.inbox_updates", "shown")}
# Names a form shares with another but never uses: the note form is the reply form's twin.
UNUSED = {("console.note", "reply_to"), ("console.note", "upload_id")}


def _foreign(site: Site) -> dict[str, str]:
    other = site.other
    team = create_team(other.brand, "Their team")
    tag = tags.create_tag(other.brand, None, "their tag")
    upload = uploads.accept(other.brand.id, b"%PDF-1.4\n%%EOF\n", "theirs.pdf")
    db.session.commit()
    return {
        "conversation": str(other.conversation.id),
        "message": str(other.message.id),
        "contact": str(other.contact.id),
        "agent": str(other.agent.id),
        "team": str(team.id),
        "brand": str(other.brand.id),
        "channel": str(other.channel.id),
        "tag": str(tag.id),
        "upload": str(upload.id),
    }


def _flashed_error(client) -> bool:
    with client.session_transaction() as session:
        return any(category == "error" for category, _ in session.get("_flashes", []))


def test_ids_of_another_brand_in_queries_and_forms_find_nothing(app, site, monkeypatch):
    """Every console and dashboard route, every id-like name it reads, given another brand's
    row: a 404 or a refusal, and nothing changes. The names are found by asking each route."""
    foreign = _foreign(site)
    monkeypatch.setattr(app.request_class, "parameter_storage_class", RecordingArgs)
    client = site.clients[AD]
    failures = []
    checked = 0
    for rule in all_rules(app):
        kind, _least = ACCESS[rule.endpoint]
        if kind not in (CONSOLE, CONSOLE_JSON, DASHBOARD):
            continue
        for method in methods_of(rule):
            RecordingArgs.asked = set()
            _ask(site, rule, method, AD).close()
            names = RecordingArgs.asked - NOT_IDS
            unknown = names - set(ID_FIELDS)
            if unknown:
                failures.append(f"{rule.endpoint} reads {sorted(unknown)}: map them in ID_FIELDS")
            for name in sorted(names & set(ID_FIELDS)):
                if (rule.endpoint, name) in UNUSED:
                    continue
                value = foreign[ID_FIELDS[name]]
                path = site.path(rule, AD)
                before = snapshot()
                if method == "GET":
                    response = client.get(path, query_string={name: value}, buffered=False)
                else:
                    form = {**FORMS.get(rule.endpoint, {}), "csrf_token": client.csrf}
                    form.update(FOREIGN_FORMS.get((rule.endpoint, name), {}))
                    response = client.open(path, method=method, data={**form, name: value})
                status = response.status_code
                if (rule.endpoint, name) in HINTS and status == 200:
                    body = response.get_json()
                    drawn = {str(i) for i in body["order"]} | set(body["rows"])
                    status = 404 if value not in drawn else 200
                response.close()
                refused = status in (400, 403, 404, 409, 422) or (
                    status == 302 and _flashed_error(client)
                )
                difference = changed(before, snapshot())
                client.get("/notifications")  # take the flashes
                checked += 1
                if not refused or difference:
                    failures.append(f"{method} {path} {name}={value}: {status} {difference}")
    assert checked >= 10
    assert not failures, "\n".join(failures)


# Another brand's data never shows -----------------------------------------------------------------

# In every kind of the other brand's rows: MARKER to be searched for, LEAK to be looked for (a
# page may repeat the query it was asked, never the rows it was not asked for).
MARKER = "zqxmarker"
LEAK = "qvleakq"


def _plant_marker(site: Site) -> None:
    other = site.other
    other.contact.name = f"{MARKER} {LEAK} contact"
    other.contact.username = f"{MARKER}_{LEAK}"
    other.agent.name = f"{MARKER} {LEAK} agent"
    message = receive(other.channel, other.contact.platform_id, f"{MARKER} {LEAK} message")
    conversation = db.session.get(Conversation, message.conversation_id)
    ticket = db.session.get(Ticket, conversation.current_ticket_id)
    tags.add_tag(ticket, f"{MARKER}tag", None)
    notes.add_note(ticket, other.agent, f"{MARKER} {LEAK} note")
    create_team(other.brand, f"{MARKER} {LEAK} team")
    canned.create(
        other.brand, other.manager, MARKER, f"{MARKER} {LEAK}", f"{MARKER} {LEAK}", shared=True
    )
    sla.create_policy(other.brand, None, f"{MARKER} {LEAK}", 0, {}, {"resolution_min": 60})
    outgoing.create_subscription(
        other.brand, None, f"https://93.184.216.34/{MARKER}/{LEAK}", ["ticket.created"]
    )
    for agent in (other.agent, other.manager, other.admin):
        notify(agent.id, other.brand.id, NotificationKind.MENTION, f"{MARKER} {LEAK} notice",
               conversation_id=other.conversation.id)  # fmt: skip
    db.session.commit()


def _pages(app, site: Site, role: Role, query: dict) -> Iterator[tuple[str, str]]:
    """Every brand-scoped GET route with the given brand's ids, as (path, body)."""
    for rule in all_rules(app):
        kind, _least = ACCESS[rule.endpoint]
        if kind not in BRAND_SCOPED or "GET" not in rule.methods:
            continue
        if rule.endpoint == "console.live_stream":
            continue  # a stream holds the connection: the poll (live_poll) answers the same events
        path = site.path(rule, role)
        idle()
        if kind == API_TOKEN:
            headers = {"Authorization": f"Bearer {site.tokens[role]}"}
            response = site.app.test_client().get(path, headers=headers, query_string=query)
        else:
            response = site.clients[role].get(path, query_string=query)
        yield path, response.get_data(as_text=True)


def test_no_page_shows_another_brands_rows(app, site):
    _plant_marker(site)
    for query in ({}, {"q": MARKER}, {"tag": f"{MARKER}tag"}):
        for path, body in _pages(app, site, AD, query):
            assert LEAK not in body.lower(), f"{path} {query} shows another brand's rows"


def test_the_marker_test_would_see_a_leak(app, site):
    """The other brand's own admin finds the marker on its pages: the check above can fail."""
    _plant_marker(site)
    site.own, site.other = site.other, site.own
    site.clients[AD] = site.app.test_client()
    signed_in(site.clients[AD], site.own.admin)
    site.tokens[AD] = create_token(site.own.brand, "theirs", AD)[1]
    db.session.commit()
    seen = {path for path, body in _pages(app, site, AD, {"q": MARKER}) if LEAK in body.lower()}
    assert {"/inbox", "/search", "/notifications", API + "/conversations"} <= seen, seen


# Sessions -----------------------------------------------------------------------------------------


def _cookie_header(response, name: str) -> str | None:
    for header in response.headers.getlist("Set-Cookie"):
        if header.startswith(f"{name}="):
            return header
    return None


def test_a_cookie_from_before_sign_in_stays_anonymous(app, client):
    """Session fixation: an attacker who planted (or kept) the pre-sign-in cookie gets nothing."""
    world = World()
    csrf_token(client)  # the visitor has a session now, with a CSRF token in it
    planted = client.get_cookie("session").value
    assert login(client, world.agent.email).status_code == 302
    assert client.get_cookie("session").value != planted
    attacker = app.test_client()
    attacker.set_cookie("session", planted)
    response = attacker.get("/inbox")
    assert response.status_code == 302 and "/login" in response.headers["Location"]


def test_sign_out_ends_every_copy_of_the_session_and_the_remember_cookie(app, client):
    world = World()
    signed_in(client, world.agent, remember=True)
    session_copy = client.get_cookie("session").value
    remember_copy = client.get_cookie("remember_token").value
    token = csrf_token(client, "/inbox")
    response = client.post("/logout", data={"csrf_token": token})
    assert response.status_code == 302
    cleared = _cookie_header(response, "remember_token")
    assert cleared and ("Max-Age=0" in cleared or "1970" in cleared), cleared
    for name, value in (("session", session_copy), ("remember_token", remember_copy)):
        thief = app.test_client()
        thief.set_cookie(name, value)
        refused = thief.get("/inbox")
        assert refused.status_code == 302 and "/login" in refused.headers["Location"], name
    # Signing in again works, and the new session is a session again.
    signed_in(client, world.agent)
    assert client.get("/inbox").status_code == 200


def test_sign_out_keeps_the_other_agents_signed_in(app, client):
    world = World()
    colleague = signed_in(app.test_client(), world.manager)
    signed_in(client, world.agent)
    client.post("/logout", data={"csrf_token": csrf_token(client, "/inbox")})
    assert colleague.get("/inbox").status_code == 200


# Sign-in throttling -------------------------------------------------------------------------------


def test_variants_of_an_email_share_its_lock(client, app):
    world = World()
    email = world.agent.email
    for variant in (email.upper(), f"  {email}", email.title(), f"{email} ", email):
        assert login(client, variant, "wrong").status_code in (401, 429)
    assert login(app.test_client(), email).status_code == 429


@pytest.mark.slow
def test_a_lock_says_the_same_for_an_unknown_email(client, app):
    """No account discovery through the lock: an address that has no account locks alike."""
    world = World()
    answers = []
    for email in (world.agent.email, "nobody@example.test"):
        for _ in range(5):
            login(client, email, "wrong")
        response = login(app.test_client(), email, "wrong")
        answers.append((response.status_code, re.sub(r"\d+", "N", _flash_text(response))))
    assert answers[0] == answers[1] and answers[0][0] == 429


def _flash_text(response) -> str:
    found = re.search(r'class="flash[^"]*"[^>]*>(.*?)<', response.get_data(as_text=True), re.S)
    return found.group(1).strip() if found else response.get_data(as_text=True)[:200]


# API token revocation -----------------------------------------------------------------------------


def test_a_token_revoked_from_the_command_line_is_refused_everywhere_at_once(app, runner, site):
    created = runner.invoke(args=["create-token", "--brand", site.own.brand.slug, "--name", "ci"])
    token = created.output.strip()
    bearer = {"Authorization": f"Bearer {token}"}
    api = app.test_client()
    assert api.get(API + "/tickets", headers=bearer).status_code == 200
    revoked = runner.invoke(args=["revoke-token", "--brand", site.own.brand.slug, "--name", "ci"])
    assert revoked.exit_code == 0, revoked.output
    assert token not in revoked.output
    for rule in all_rules(app):
        if ACCESS[rule.endpoint][0] != API_TOKEN:
            continue
        for method in methods_of(rule):
            response = api.open(site.path(rule), method=method, headers=bearer, json={})
            assert response.status_code == 401, (method, rule.rule, response.status_code)
    # The brand's other tokens keep working; another brand's token of the same name is untouched.
    other_token = {"Authorization": f"Bearer {site.tokens[A]}"}
    assert api.get(API + "/tickets", headers=other_token).status_code == 200
    again = runner.invoke(args=["revoke-token", "--brand", site.own.brand.slug, "--name", "ci"])
    assert again.exit_code != 0


def test_revoking_needs_the_tokens_own_brand(runner, site):
    _row, token = create_token(site.other.brand, "shared-name", AD)
    db.session.commit()
    result = runner.invoke(
        args=["revoke-token", "--brand", site.own.brand.slug, "--name", "shared-name"]
    )
    assert result.exit_code != 0
    bearer = {"Authorization": f"Bearer {token}"}
    assert site.app.test_client().get(API + "/tickets", headers=bearer).status_code == 200


# Secrets ------------------------------------------------------------------------------------------

CHANNEL_TOKEN = "EAAGchannel" + secrets.token_hex(12)
PASSWORD = "pw-" + secrets.token_hex(12)
WRONG_PASSWORD = "wrong-" + secrets.token_hex(12)


class Secrets:
    """Every secret the flows below create, each once in plain text."""

    def __init__(self):
        self.values: dict[str, str] = {
            "channel token": CHANNEL_TOKEN,
            "password": PASSWORD,
            "wrong password": WRONG_PASSWORD,
        }

    def found_in(self, text_: str) -> list[str]:
        return [name for name, value in self.values.items() if value and value in text_]


class Collect(logging.Handler):
    """Every record, at every level, whatever replaced pytest's own handlers (alembic's logging
    configuration does, when the first test of a run builds the schema)."""

    def __init__(self):
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def collected() -> Iterator[Collect]:
    root = logging.getLogger()
    handler, level = Collect(), root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    yield handler
    root.removeHandler(handler)
    root.setLevel(level)


@pytest.fixture
def secret_flows(app, runner, client, collected, monkeypatch) -> Secrets:
    """Connect a channel, make an agent and a token, sign in (wrong, then right), receive a
    signed webhook and fetch the profile, send a reply through the Graph API simulator (once
    refused for the token, once sent), and make an outgoing webhook: all logged at DEBUG."""
    from devtools.graphsim.testing import running_simulator
    from helpdesk.delivery import service as delivery
    from helpdesk.intake.profiles import fetch_profile

    found = Secrets()
    for name in ("enqueue_delivery", "enqueue_reaction"):
        monkeypatch.setattr(f"helpdesk.web.api.conversations.{name}", lambda *_args: True)
    account = "17841400000000077"
    assert runner.invoke(args=["create-brand", "vault", "--name", "Vault"]).exit_code == 0
    connected = runner.invoke(
        args=["connect-instagram", "--brand", "vault", "--account-id", account,
              "--access-token", CHANNEL_TOKEN]
    )  # fmt: skip
    assert connected.exit_code == 0 and CHANNEL_TOKEN not in connected.output
    made = runner.invoke(
        args=["create-agent", "keeper@example.test", "--name", "Keeper", "--role", "admin",
              "--brand", "vault", "--password", PASSWORD]
    )  # fmt: skip
    assert made.exit_code == 0 and PASSWORD not in made.output
    token = runner.invoke(args=["create-token", "--brand", "vault", "--name", "ci"]).output.strip()
    found.values["api token"] = token
    found.values["api token hash"] = hashlib.sha256(token.encode()).hexdigest()

    assert login(client, "keeper@example.test", WRONG_PASSWORD).status_code == 401
    assert login(client, "keeper@example.test", PASSWORD).status_code == 302

    with running_simulator() as sim:
        monkeypatch.setitem(app.config, "GRAPH_API_BASE", sim.base_url)
        body = {"object": "instagram", "entry": [{"id": account, "time": 1, "messaging": [{
            "sender": {"id": "6120000000000077"}, "recipient": {"id": account},
            "timestamp": int(time.time() * 1000),
            "message": {"mid": "secret-flow-1", "text": "hello"}}]}]}  # fmt: skip
        raw = json.dumps(body).encode()
        signed = {"X-Hub-Signature-256": sign(raw)}
        assert client.post("/webhooks/instagram", data=raw, headers=signed).status_code == 200
        for event_id in db.session.scalars(
            select(WebhookEvent.id).where(WebhookEvent.status == EventStatus.PENDING)
        ).all():
            for contact_id in intake.process_event(event_id):
                fetch_profile(contact_id)
            db.session.commit()
        conversation = db.session.scalar(select(Conversation))
        bearer = {"Authorization": f"Bearer {token}"}
        for code in (190, None):  # refused for the token, then sent
            if code:
                sim.fail_next(code)
            sent = client.post(
                f"{API}/conversations/{conversation.id}/messages",
                json={"text": "on its way"},
                headers=bearer,
            )
            assert sent.status_code == 202, sent.get_json()
            delivery.deliver(sent.get_json()["id"])
            db.session.commit()
            channel = db.session.scalar(select(Channel).where(Channel.account_id == account))
            channel.needs_new_token = False
            db.session.commit()
        subscribed = client.post(
            f"{API}/webhook-subscriptions",
            json={"url": "https://93.184.216.34/hooks", "events": ["ticket.created"]},
            headers=bearer,
        )
        assert subscribed.status_code == 201
        found.values["webhook secret"] = subscribed.get_json()["secret"]
    found.records = list(collected.records)
    found.client = client  # signed in as the keeper
    return found


def _logged(records) -> str:
    lines = []
    formatter = logging.Formatter()
    for record in records:
        lines.append(record.getMessage())
        if record.exc_info:
            lines.append(formatter.formatException(record.exc_info))
    return "\n".join(lines)


def test_secrets_never_reach_the_logs(secret_flows):
    logged = _logged(secret_flows.records)
    for expected in ("message", "waits for a reconnect", "HTTP Request"):  # httpx's log too
        assert expected in logged, expected
    assert secret_flows.found_in(logged) == []


def test_api_answers_and_console_pages_never_show_secrets(app, secret_flows):
    """Every GET of the API and of the console, for the brand holding the secrets."""
    vault = db.session.scalar(select(Channel).where(Channel.account_id == "17841400000000077"))
    token = secret_flows.values["api token"]
    stored = db.session.scalar(select(Channel.access_token_encrypted).where(Channel.id == vault.id))
    secret_flows.values["stored ciphertext"] = stored
    keeper = secret_flows.client
    conversation = db.session.scalar(
        select(Conversation).where(Conversation.brand_id == vault.brand_id)
    )
    values = {
        "conversation_id": conversation.id,
        "contact_id": conversation.contact_id or 1,
        "message_id": db.session.scalar(
            select(Message.id).where(Message.conversation_id == conversation.id).limit(1)
        ),
        "ticket_id": conversation.current_ticket_id or 1, "note_id": 1,
        "notification_id": 1, "reply_id": 1, "policy_id": 1, "agent_id": 1,
        "subscription_id": 1, "name": "vip", "filename": "console.css", "team_id": 1,
        "tag_id": 1, "token_id": 1, "channel_id": 1, "rule_id": 1, "code": "unknown-code",
        "automation_id": 1, "media_id": 1,
        "invitation_token": "unknown", "reset_token": "unknown", "token": "unknown",
    }  # fmt: skip
    pages = 0
    for rule in all_rules(app):
        kind, _least = ACCESS[rule.endpoint]
        if "GET" not in rule.methods or rule.endpoint == "console.live_stream":
            continue
        path = rule.build({name: values[name] for name in rule.arguments})[1]
        idle()
        if kind == API_TOKEN:
            response = app.test_client().get(path, headers={"Authorization": f"Bearer {token}"})
        else:
            response = keeper.get(path)
        body = response.get_data(as_text=True)
        pages += 1
        assert secret_flows.found_in(body) == [], path
        assert "access_token" not in body.lower() or rule.endpoint == "api-docs.openapi_json", path
    assert pages > 30


def test_the_database_holds_no_secret_in_plain_text(app, secret_flows):
    """Every text column of every table: tokens encrypted or hashed, passwords hashed."""
    dump = []
    for table in db.metadata.sorted_tables:
        for row in db.session.execute(select(table)):
            dump.append(repr(tuple(row)))
    everything = "\n".join(dump)
    plain = dict(secret_flows.values)
    plain.pop("api token hash")  # the hash is what is stored, by design
    leaked = [name for name, value in plain.items() if value in everything]
    assert leaked == []
    stored = db.session.scalar(
        select(Channel.access_token_encrypted).where(Channel.account_id == "17841400000000077")
    )
    assert stored.startswith("gAAAAA")  # a Fernet token
    assert crypto.decrypt(stored) == CHANNEL_TOKEN


def test_a_stored_channel_token_cannot_be_read_with_another_key(app, monkeypatch):
    monkeypatch.setitem(app.config, "TOKEN_ENCRYPTION_KEY", "the production key")
    channel = connect_channel(BrandFactory(), "instagram", "17841400000000078", CHANNEL_TOKEN)
    db.session.commit()
    stored = channel.access_token_encrypted
    assert CHANNEL_TOKEN not in stored and crypto.decrypt(stored) == CHANNEL_TOKEN
    for other_key in ("another key", None):  # None: derived from SECRET_KEY
        monkeypatch.setitem(app.config, "TOKEN_ENCRYPTION_KEY", other_key)
        with pytest.raises(ValueError, match="cannot be read"):
            crypto.decrypt(stored)
        db.session.expire_all()
        with pytest.raises(ValueError):
            _ = db.session.get(Channel, channel.id).access_token
    monkeypatch.setitem(app.config, "TOKEN_ENCRYPTION_KEY", "the production key")
    brand = db.session.get(Brand, channel.brand_id)
    again = connect_channel(brand, "instagram", "17841400000000078", CHANNEL_TOKEN)
    assert again.access_token_encrypted != stored  # a fresh IV: equal tokens do not look equal


# The canned-reply sandbox, end to end -------------------------------------------------------------

HOSTILE_TEMPLATES = [
    "{{ config }}",
    "{{ config.SECRET_KEY }}",
    "{{ request.environ }}",
    "{{ self.__init__.__globals__ }}",
    "{{ ''.__class__.__mro__[1].__subclasses__() }}",
    "{{ contact.__class__ }}",
    "{{ cycler.__init__.__globals__.os }}",
    "{{ lipsum.__globals__ }}",
    "{% for x in range(10**9) %}x{% endfor %}",
    "{% include 'base.html' %}",
    "{% import 'macros.html' as m %}",
    "{{ brand.name|attr('__class__') }}",
    "{{ contact.first_name.format(contact) }}",
    "{% set x = namespace() %}",
]


@pytest.mark.parametrize("body", HOSTILE_TEMPLATES)
def test_the_api_refuses_templates_that_reach_beyond_the_placeholders(site, body):
    bearer = {"Authorization": f"Bearer {site.tokens[AD]}"}
    api = site.app.test_client()
    before = table_counts()
    created = api.post(
        API + "/canned-replies",
        json={"shortcode": "evil", "title": "Evil", "body": body},
        headers=bearer,
    )
    assert created.status_code == 422, created.get_json()
    patched = api.patch(
        f"{API}/canned-replies/{site.reply.id}", json={"body": body}, headers=bearer
    )
    assert patched.status_code == 422, patched.get_json()
    assert table_counts() == before


def test_what_a_customer_writes_is_never_run_as_a_template(app, site):
    contact = site.own.contact
    contact.name = "{{ config.SECRET_KEY }} {% for x in range(9) %}x{% endfor %}"
    contact.username = "{{7*7}}"
    site.reply.body = "Hi {{ contact.first_name }} / {{ contact.username }} / {{ brand.name }}"
    db.session.commit()
    bearer = {"Authorization": f"Bearer {site.tokens[AD]}"}
    rendered = app.test_client().post(
        f"{API}/canned-replies/{site.reply.id}/render",
        json={"conversation_id": site.own.conversation.id},
        headers=bearer,
    )
    assert rendered.status_code == 200, rendered.get_json()
    text_ = rendered.get_json()["text"]
    assert "{{" in text_ and "{{7*7}}" in text_ and "49" not in text_
    assert app.config["SECRET_KEY"] not in text_
    console = site.clients[A].get(
        f"/canned/{site.reply.id}/render",
        query_string={"conversation_id": site.own.conversation.id},
    )
    assert console.status_code == 200 and console.get_json()["text"] == text_


# Escaping in every template -----------------------------------------------------------------------

HOSTILE = '"><script>alert(1)</script><img src=x onerror=alert(1)>'
JS_URL = "javascript:alert(1)"
URL_ATTRIBUTES = ("href", "src", "action", "formaction", "poster", "data", "srcset", "xlink:href")
TEMPLATES = Path(__file__).resolve().parent.parent / "templates"
REFERENCE = re.compile(r"""{%-?\s*(?:extends|include|import|from)\s+["']([^"']+)["']""")


class _Elements(HTMLParser):
    def __init__(self, html: str):
        super().__init__(convert_charrefs=True)
        self.elements: list[tuple[str, dict[str, str | None]]] = []
        self.scripts: list[str] = []
        self._in_script = False
        self.feed(html)

    def handle_starttag(self, tag, attrs):
        self.elements.append((tag, dict(attrs)))
        self._in_script = tag == "script"

    def handle_endtag(self, tag):
        self._in_script = False

    def handle_data(self, data):
        if self._in_script:
            self.scripts.append(data)


def assert_inert(page: str, where: str) -> None:
    assert "<script>alert" not in page, where
    assert "<img src=x" not in page, where
    parsed = _Elements(page)
    for tag, attrs in parsed.elements:
        assert not any(name.startswith("on") for name in attrs), (where, tag, attrs)
        for name in URL_ATTRIBUTES:
            value = (attrs.get(name) or "").strip().lower()
            assert not value.startswith(("javascript:", "data:", "vbscript:")), (where, tag, attrs)
        if tag == "script" and attrs.get("src"):
            assert attrs["src"].startswith("/static/"), (where, attrs)
        style = (attrs.get("style") or "").lower()
        assert "expression(" not in style and "javascript:" not in style, (where, attrs)
    for script in parsed.scripts:
        assert "alert(" not in script, where


def _hostile_brand(site: Site) -> None:
    """Everything a customer (and a careless colleague) can write, made hostile."""
    own = site.own
    own.contact.name, own.contact.username = HOSTILE, "x" + HOSTILE
    own.contact.avatar_url = JS_URL
    own.agent.name = HOSTILE
    own.channel.name = HOSTILE
    stranger = ContactFactory(
        channel=own.channel, name=HOSTILE, username=HOSTILE, avatar_url=JS_URL
    )
    receive(own.channel, own.contact.platform_id, f"{HOSTILE} {JS_URL} http://ok.example/<x>")
    receive(own.channel, stranger.platform_id, HOSTILE)  # a request
    for kind, attachment in (
        (MessageKind.IMAGE, {"type": "image", "url": JS_URL}),
        (MessageKind.SHARE, {"type": "share", "url": JS_URL, "title": HOSTILE}),
        (MessageKind.LINK, {"type": "link", "url": "data:text/html,<script>alert(1)</script>"}),
        (MessageKind.STORY_REPLY, {"type": "story", "url": JS_URL}),
        (MessageKind.FILE, {"type": "file", "url": JS_URL, "title": HOSTILE, "size": HOSTILE}),
    ):
        receive(own.channel, own.contact.platform_id, HOSTILE, kind=kind, attachments=[attachment])
    ticket = db.session.get(Ticket, own.conversation.current_ticket_id)
    tags.add_tag(ticket, HOSTILE[:60], None)
    notes.add_note(ticket, own.agent, f"{HOSTILE} @{own.manager.name}")
    create_team(own.brand, HOSTILE[:100])
    canned.create(
        own.brand, own.manager, "evil", HOSTILE, HOSTILE + " {{ contact.first_name }}", shared=True
    )
    for agent in site.agents().values():
        notify(agent.id, own.brand.id, NotificationKind.MENTION, HOSTILE,
               conversation_id=own.conversation.id)  # fmt: skip
    db.session.commit()


def test_every_template_shows_hostile_content_inert(app, site):
    _hostile_brand(site)
    rendered: list[str] = []

    def record(sender, template, context, **extra):
        rendered.append(template.name)

    template_rendered.connect(record, app)
    try:
        pages = 0
        for who in (None, A, M, AD):
            client = site.clients[who] if who else site.anonymous
            for rule in all_rules(app):
                kind, _least = ACCESS[rule.endpoint]
                if "GET" not in rule.methods or kind in (API_TOKEN, SIGNATURE, VERIFY_TOKEN):
                    continue
                if rule.endpoint in ("static", "console.live_stream"):
                    continue
                path = site.path(rule, who)
                idle()
                response = client.get(path)
                if response.mimetype == "text/html":
                    pages += 1
                    assert_inert(response.get_data(as_text=True), f"{who} {rule.rule}")
        admin = site.clients[AD]
        conversation = site.own.conversation.id
        for path, form in (  # flashes that repeat what was typed, and the sign-in form
            (f"/conversations/{conversation}/status", {"status": HOSTILE}),
            (f"/conversations/{conversation}/priority", {"priority": HOSTILE}),
            ("/inbox/bulk", {"ids": str(conversation), "bulk_action": HOSTILE}),
        ):
            admin.post(path, data={"csrf_token": admin.csrf, **form})
            assert_inert(admin.get("/inbox").get_data(as_text=True), path)
        for path in (f"/inbox?tag={HOSTILE}", f"/search?q={HOSTILE}", f"/dashboard?from={HOSTILE}",
                     f"/conversations/{conversation}?reply_to={site.own.message.id}",
                     "/conversations/999999", "/inbox?folder=hidden"):  # fmt: skip
            assert_inert(admin.get(path).get_data(as_text=True), path)
        stranger = app.test_client()
        page = stranger.post(
            f"/login?next={HOSTILE}",
            data={"csrf_token": csrf_token(stranger), "email": HOSTILE, "password": "x"},
        )
        assert_inert(page.get_data(as_text=True), "login")
        assert_inert(stranger.get(f"/login?next={HOSTILE}").get_data(as_text=True), "login")
        joining = f"/invitations/{site.invitation}"  # the name typed is shown again, refused
        page = stranger.post(
            joining, data={"csrf_token": csrf_token(stranger), "name": HOSTILE, "password": "x"}
        )
        assert page.status_code == 422
        assert_inert(page.get_data(as_text=True), "invitation")
        assert_inert(stranger.get("/invitations/unknown").get_data(as_text=True), "invitation")
        db.session.add(DataDeletionRequest(confirmation_code="hostile", platform_user_id=HOSTILE))
        db.session.commit()
        status = stranger.get("/data-deletion/hostile")
        assert status.status_code == 200
        assert_inert(status.get_data(as_text=True), "data deletion status")
    finally:
        template_rendered.disconnect(record, app)
    assert pages > 30
    # Every template was part of a page above: rendered, or extended/included/imported by one.
    reached = set(rendered)
    sources = {
        path.relative_to(TEMPLATES).as_posix(): path.read_text()
        for path in TEMPLATES.rglob("*.html")
    }
    while True:
        more = {name for parent in reached for name in REFERENCE.findall(sources.get(parent, ""))}
        if more <= reached:
            break
        reached |= more
    assert set(sources) - reached == set(), "render these templates with hostile content"


# Outgoing webhook targets: the cases test_outgoing.py leaves -------------------------------------

EMBEDDED_INTERNAL = [
    "2002:7f00:1::1",  # 6to4 around 127.0.0.1
    "2002:a00:1::1",  # 6to4 around 10.0.0.1
    "::127.0.0.1",  # IPv4-compatible
    "::ffff:0:a00:1",  # IPv4-translated (SIIT) 10.0.0.1
    "64:ff9b:1::a00:1",  # local-use NAT64 around 10.0.0.1
    "2001:0:4136:e378:8000:63bf:3fff:fdd2",  # Teredo
    "::",
    "100.64.0.1",  # carrier-grade NAT
    "0.1.2.3",  # "this network"
    "198.18.0.1",  # benchmarking
    "224.0.0.1",  # multicast
    "255.255.255.255",
]
LITERAL_URLS = [
    "http://0x7f000001/hook",  # hex
    "http://0177.0.0.1/hook",  # octal
    "http://127.000.000.001/hook",
    "http://[0:0:0:0:0:ffff:7f00:1]/hook",
    "http://localhost./hook",
    "http://LocalHost:80/hook",
    "http://hooks.example.test@127.0.0.1/hook",  # the host is after the @
    "http://127.0.0.1#@hooks.example.test/hook",
    "https://[::1]:443/hook",
]


@pytest.mark.parametrize("address", EMBEDDED_INTERNAL)
def test_a_host_resolving_to_an_internal_address_in_disguise_is_refused(dns, address):
    dns["disguised.example.test"] = [address]
    with pytest.raises(ValidationError):
        outgoing.check_url("https://disguised.example.test/hook")


@pytest.mark.parametrize("url", LITERAL_URLS)
def test_internal_addresses_written_otherwise_are_refused(url):
    with pytest.raises(ValidationError):
        outgoing.check_url(url)


def test_the_api_refuses_internal_targets_with_422_and_stores_nothing(app, dns):
    dns["intranet.example.test"] = ["10.0.0.8"]
    _row, token = create_token(BrandFactory(), "hooks", AD)
    db.session.commit()
    bearer = {"Authorization": f"Bearer {token}"}
    before = table_counts()
    for url in ("https://intranet.example.test/hook", "http://127.0.0.1:5000/hook",
                "ftp://93.184.216.34/x", "file:///etc/passwd", "http://[::1]/"):  # fmt: skip
        response = app.test_client().post(
            API + "/webhook-subscriptions",
            json={"url": url, "events": ["ticket.created"]},
            headers=bearer,
        )
        assert response.status_code == 422, (url, response.get_json())
    assert table_counts() == before


def test_allowing_private_targets_is_a_setting_not_a_default(app, dns, monkeypatch):
    dns["intranet.example.test"] = ["10.0.0.8"]
    with pytest.raises(ValidationError):
        outgoing.check_url("https://intranet.example.test/hook")
    monkeypatch.setitem(app.config, "OUTGOING_WEBHOOKS_ALLOW_PRIVATE", True)
    _parsed, addresses = outgoing.check_url("https://intranet.example.test/hook")
    assert addresses == ["10.0.0.8"]
    with pytest.raises(ValidationError):  # the scheme rule stays
        outgoing.check_url("file:///etc/passwd")
