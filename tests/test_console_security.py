"""Every console route is closed to strangers, other brands, missing roles and forged forms, and
everything a customer wrote is shown inert."""

from __future__ import annotations

import re
from html.parser import HTMLParser

import pytest

from helpdesk.accounts.models import Role
from helpdesk.canned import service as canned
from helpdesk.dm.models import Conversation, MessageKind, RequestState
from helpdesk.extensions import db
from helpdesk.media.models import MediaObject, MediaOrigin, MediaStatus
from helpdesk.notifications.models import NotificationKind
from helpdesk.notifications.service import notify
from helpdesk.tickets import notes
from helpdesk.tickets.models import Ticket
from tests.conftest import table_counts
from tests.factories import AgentFactory, ContactFactory, member
from tests.helpers.console import csrf_token, post, signed_in
from tests.helpers.world import World, receive

# Signed-out pages: the invitation and reset links are walked by tests/test_invitations.py.
PUBLIC = {"auth.login", "auth.invitation", "auth.password_reset"}
JSON_ENDPOINTS = {
    "console.canned_search",
    "console.canned_render",
    "console.mention_candidates",
    "console.inbox_updates",
    "console.live_poll",
    "console.live_stream",
    "console.presence",
}


def console_rules(app):
    """Every console and sign-in route with each of its methods."""
    for rule in app.url_map.iter_rules():
        if not rule.endpoint.startswith(("console.", "auth.")) or rule.endpoint in PUBLIC:
            continue
        if rule.rule.startswith(("/api/", "/webhooks/", "/static")):
            continue
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            yield rule, method


def _stored_media(world: World) -> int:
    """A copy of the world's message's media, as the console serves it (its bytes don't matter:
    another brand's agent must not get as far as reading them)."""
    media = MediaObject(
        brand_id=world.brand.id,
        origin=MediaOrigin.INBOUND,
        message_id=world.message.id,
        attachment_index=0,
        kind="image",
        status=MediaStatus.STORED,
        storage_key=f"{world.brand.id}/matrix",
        content_type="image/png",
    )
    db.session.add(media)
    db.session.commit()
    return media.id


class Targets:
    """Ids of one brand's objects, one for each kind of id a console path takes."""

    def __init__(self, world: World):
        self.world = world
        reply = canned.create(
            world.brand, world.manager, "thanks", "Thanks", "Thanks!", shared=True
        )
        notification = notify(
            world.agent.id,
            world.brand.id,
            NotificationKind.MENTION,
            "You were mentioned",
            conversation_id=world.conversation.id,
        )
        db.session.commit()
        note = notes.add_note(
            db.session.get(Ticket, world.conversation.current_ticket_id), world.agent, "Checked"
        )
        db.session.commit()
        self.ids = {
            "conversation_id": world.conversation.id,
            "message_id": world.message.id,
            "notification_id": notification.id,
            "reply_id": reply.id,
            "note_id": note.id,
            "contact_id": world.contact.id,
            "media_id": _stored_media(world),
        }

    def url(self, rule) -> str:
        path = rule.rule
        for name in rule.arguments:
            path = path.replace(f"<int:{name}>", str(self.ids[name]))
        if rule.endpoint == "console.canned_render":
            path += f"?conversation_id={self.ids['conversation_id']}"
        if rule.endpoint == "console.inbox_updates":
            path += "?since=2026-01-01T00:00:00%2B00:00"
        return path


@pytest.fixture
def targets() -> Targets:
    return Targets(World("owner"))


def test_every_console_route_is_enumerated(app):
    endpoints = {rule.endpoint for rule, _method in console_rules(app)}
    assert {"console.inbox", "console.conversation", "console.reply", "auth.logout"} <= endpoints
    assert len(endpoints) >= 30


def test_anonymous_visitors_are_sent_to_sign_in(app, client, targets):
    token = csrf_token(client)  # an anonymous session may hold a token; it is not enough
    for rule, method in console_rules(app):
        url = targets.url(rule)
        response = client.open(url, method=method, data={"csrf_token": token})
        if rule.endpoint in JSON_ENDPOINTS:
            assert response.status_code == 401, url
            assert response.json["error"]["code"] == "unauthorized"
        else:
            assert response.status_code == 302, (method, url, response.status_code)
            assert "/login" in response.headers["Location"], url


@pytest.mark.slow
def test_an_agent_of_another_brand_finds_nothing(app, client, targets):
    stranger = World("stranger")
    signed_in(client, stranger.admin)
    token = csrf_token(client, "/inbox")
    before = table_counts()
    checked = 0
    for rule, method in console_rules(app):
        if not rule.arguments:
            continue
        url = targets.url(rule)
        response = client.open(url, method=method, data={"csrf_token": token})
        assert response.status_code == 404, (method, url, response.status_code)
        checked += 1
    assert checked >= 20
    after = table_counts()
    assert after == before


def test_another_agents_notification_is_not_found(client, targets):
    colleague = targets.world.manager
    signed_in(client, colleague)
    path = f"/notifications/{targets.ids['notification_id']}/read"
    assert post(client, path).status_code == 404


def test_every_post_route_refuses_a_form_without_csrf_token(app, client, targets):
    signed_in(client, targets.world.admin)
    before = table_counts()
    for rule, method in console_rules(app):
        if method != "POST":
            continue
        response = client.post(targets.url(rule), data={"status": "resolved", "text": "hi"})
        assert response.status_code == 400, rule.rule
    assert table_counts() == before
    assert client.get("/inbox").status_code == 200  # still signed in


def test_a_forged_csrf_token_is_refused(client, world):
    signed_in(client, world.agent)
    response = client.post(
        f"/conversations/{world.conversation.id}/take", data={"csrf_token": "forged"}
    )
    assert response.status_code == 400


def test_api_and_webhooks_are_not_asked_for_a_csrf_token(client):
    assert client.post("/webhooks/instagram", data=b"{}").status_code == 401  # signature, not CSRF
    response = client.post("/api/v1/conversations/1/request", json={"action": "accept"})
    assert response.status_code == 401


# Roles --------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_hidden_requests_are_for_admins(client, world):
    world.brand.hidden_words = ["giveaway"]
    stranger = ContactFactory(channel=world.channel)
    message = receive(world.channel, stranger.platform_id, "Win our crypto giveaway now")
    hidden = db.session.get(Conversation, message.conversation_id)
    assert hidden.request_state is RequestState.HIDDEN
    db.session.commit()

    for agent, expected in ((world.agent, 403), (world.manager, 403), (world.admin, 200)):
        signed_in(client, agent)
        assert client.get("/inbox?folder=hidden").status_code == expected
        assert client.get(f"/conversations/{hidden.id}").status_code == expected
        post(client, "/logout")
    signed_in(client, world.admin)
    assert "Win our crypto giveaway" in client.get("/inbox?folder=hidden").get_data(as_text=True)


def test_hidden_folder_is_not_offered_below_admin(client, world):
    signed_in(client, world.agent)
    assert "folder=hidden" not in client.get("/inbox").get_data(as_text=True)


def test_unblocking_needs_a_manager(client, world):
    world.contact.blocked = True
    db.session.commit()
    path = f"/conversations/{world.conversation.id}/contact/unblock"
    signed_in(client, world.agent)
    assert post(client, path).status_code == 403
    post(client, "/logout")
    signed_in(client, world.manager)
    assert post(client, path).status_code == 302
    db.session.expire_all()
    assert world.contact.blocked is False


def test_bulk_actions_refuse_another_brands_conversations(client, world):
    other = World("other")
    signed_in(client, world.agent)
    response = post(
        client,
        "/inbox/bulk",
        {"ids": [world.conversation.id, other.conversation.id], "bulk_action": "resolve"},
    )
    assert response.status_code == 404
    db.session.expire_all()
    assert other.conversation.status.value == "open"
    assert world.conversation.status.value == "open"


def test_flash_redirects_never_leave_the_site(client, world):
    signed_in(client, world.agent)
    response = post(
        client,
        f"/conversations/{world.conversation.id}/priority",
        {"priority": "high", "next": "https://evil.example/"},
    )
    assert response.status_code == 302
    assert response.headers["Location"].endswith(f"/conversations/{world.conversation.id}")


# Escaping -----------------------------------------------------------------------------------------

HOSTILE_TEXT = (
    "<script>alert(1)</script> <img src=x onerror=alert(1)> "
    "javascript:alert(1) and [click](javascript:alert(1)) JaVaScRiPt:alert(2)"
)
JS_URL = re.compile(r"""(href|src|action|formaction|poster|data)\s*=\s*["']?\s*javascript:""", re.I)


class _Tags(HTMLParser):
    """Every element and attribute as a browser would parse them."""

    def __init__(self, html: str):
        super().__init__(convert_charrefs=True)
        self.elements: list[tuple[str, dict[str, str | None]]] = []
        self.feed(html)

    def handle_starttag(self, tag, attrs):
        self.elements.append((tag, dict(attrs)))


URL_ATTRIBUTES = ("href", "src", "action", "formaction", "poster", "data", "srcset")


def _assert_inert(html: str) -> None:
    assert "<script>alert" not in html
    assert "<img src=x" not in html
    assert not JS_URL.search(html)
    scripts = []
    for tag, attrs in _Tags(html).elements:
        assert not any(name.startswith("on") for name in attrs), (tag, attrs)
        for name in URL_ATTRIBUTES:
            value = (attrs.get(name) or "").strip().lower()
            assert not value.startswith(("javascript:", "data:", "vbscript:")), (tag, attrs)
        if tag == "script":
            scripts.append(attrs.get("src"))
    assert "/static/console.js" in scripts  # and no script but the app's own files, none inline
    assert all(src and src.startswith("/static/") and src.endswith(".js") for src in scripts)


def test_customer_content_is_shown_inert(client, world):
    hostile = ContactFactory(
        channel=world.channel,
        followed_by_brand=True,
        name="<script>alert('name')</script>",
        username="x<img src=x onerror=alert(1)>",
        avatar_url="javascript:alert(1)",
    )
    message = receive(world.channel, hostile.platform_id, HOSTILE_TEXT)
    receive(
        world.channel,
        hostile.platform_id,
        None,
        kind=MessageKind.IMAGE,
        attachments=[{"type": "image", "url": "javascript:alert(1)"}],
    )
    receive(
        world.channel,
        hostile.platform_id,
        None,
        kind=MessageKind.SHARE,
        attachments=[{"type": "share", "url": "javascript:alert(1)", "title": "<b>bold</b>"}],
    )
    receive(
        world.channel,
        hostile.platform_id,
        "see http://ok.example/a?b=1&c=<x> now",
        kind=MessageKind.LINK,
        attachments=[{"type": "link", "url": "data:text/html,<script>alert(1)</script>"}],
    )
    db.session.commit()
    signed_in(client, world.agent)
    page = client.get(f"/conversations/{message.conversation_id}").get_data(as_text=True)
    _assert_inert(page)
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "&lt;img src=x onerror=alert(1)&gt;" in page
    assert "&lt;b&gt;bold&lt;/b&gt;" in page
    assert (
        '<a href="http://ok.example/a?b=1&amp;c=" target="_blank" '
        'rel="noopener noreferrer nofollow">http://ok.example/a?b=1&amp;c=</a>&lt;x&gt;'
    ) in page
    for path in ("/inbox", "/search?q=alert", "/search?q=script"):
        _assert_inert(client.get(path).get_data(as_text=True))


def test_links_in_text_open_safely(client, world):
    message = receive(
        world.channel, world.contact.platform_id, "Tracking: https://track.example/123. Thanks!"
    )
    db.session.commit()
    signed_in(client, world.agent)
    page = client.get(f"/conversations/{message.conversation_id}").get_data(as_text=True)
    assert (
        '<a href="https://track.example/123" target="_blank" '
        'rel="noopener noreferrer nofollow">https://track.example/123</a>. Thanks!'
    ) in page


def test_notes_and_agent_names_are_escaped_too(client, world):
    rogue = AgentFactory(name="<script>alert('agent')</script>")
    member(rogue, world.brand, Role.AGENT)
    db.session.commit()
    signed_in(client, rogue)
    post(
        client,
        f"/conversations/{world.conversation.id}/note",
        {"text": "<img src=x onerror=alert(1)> see javascript:alert(1)"},
    )
    page = client.get(f"/conversations/{world.conversation.id}").get_data(as_text=True)
    _assert_inert(page)
    assert "&lt;script&gt;alert(&#39;agent&#39;)&lt;/script&gt;" in page
