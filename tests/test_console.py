"""The agent console: inbox listing, the conversation page, replies, notes, actions, search and
notifications, driven through the pages as an agent would."""

from __future__ import annotations

import re
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import event, select

from devtools.seed.demo import seed_demo
from helpdesk import queueing
from helpdesk.accounts.models import Availability, Role, Team
from helpdesk.accounts.service import add_team_member, create_team
from helpdesk.canned import service as canned
from helpdesk.dm import service as dm
from helpdesk.dm.models import (
    Conversation,
    Message,
    MessageKind,
    MessageStatus,
    NotificationLevel,
    Reaction,
    RequestState,
)
from helpdesk.extensions import db
from helpdesk.inbox import service as inbox
from helpdesk.inbox.models import ConversationView
from helpdesk.inbox.queries import PAGE_SIZE
from helpdesk.notifications.models import Notification, NotificationKind
from helpdesk.sla import service as sla
from helpdesk.tickets import service as tickets
from helpdesk.tickets import tags
from helpdesk.tickets.models import Note, Priority, Ticket, TicketStatus
from helpdesk.types import utcnow
from helpdesk.web.console.formatting import initials
from tests.conftest import drain_broker
from tests.factories import AgentFactory, ContactFactory, member
from tests.helpers.console import login, post, signed_in
from tests.helpers.world import World, known_contact, receive


@pytest.fixture
def agent_client(client, world):
    return signed_in(client, world.agent)


@contextmanager
def counting_queries():
    """Count the SQL statements sent while the block runs."""
    counter = {"n": 0}
    engine = db.engine

    def count(*_args):
        counter["n"] += 1

    event.listen(engine, "before_cursor_execute", count)
    try:
        yield counter
    finally:
        event.remove(engine, "before_cursor_execute", count)


def html(response) -> str:
    return response.get_data(as_text=True)


def row_ids(page: str) -> list[int]:
    return [int(i) for i in re.findall(r'name="ids" value="(\d+)"', page)]


def ticket_of(conversation: Conversation) -> Ticket:
    db.session.refresh(conversation)
    return db.session.get(Ticket, conversation.current_ticket_id)


def conversation_with(world: World, text: str, minutes_ago: float = 0, **contact) -> Conversation:
    person = known_contact(world.channel, **contact)
    message = receive(
        world.channel, person.platform_id, text, at=utcnow() - timedelta(minutes=minutes_ago)
    )
    return db.session.get(Conversation, message.conversation_id)


# Inbox --------------------------------------------------------------------------------------------


def test_inbox_lists_primary_conversations_with_contact_preview_and_tags(agent_client, world):
    tags.add_tag(ticket_of(world.conversation), "VIP", world.agent)
    db.session.commit()
    page = html(agent_client.get("/inbox"))
    assert "Jane Doe" in page and "@jane.doe" in page
    assert "Where is my order?" in page
    assert ">VIP<" in page
    assert row_ids(page) == [world.conversation.id]


def test_folders_views_and_counts(agent_client, world):
    mine = conversation_with(world, "mine please")
    tickets.assign(ticket_of(mine), world.agent.id, world.agent)
    theirs = conversation_with(world, "for the manager")
    tickets.assign(ticket_of(theirs), world.manager.id, world.manager)
    general = conversation_with(world, "collab?")
    dm.move_to_folder(general, "general")
    stranger = ContactFactory(channel=world.channel)
    request = db.session.get(
        Conversation, receive(world.channel, stranger.platform_id, "hi?").conversation_id
    )
    done = conversation_with(world, "thanks, solved")
    tickets.set_status(ticket_of(done), TicketStatus.RESOLVED, world.agent)
    db.session.commit()

    page = html(agent_client.get("/inbox"))
    assert set(row_ids(page)) == {world.conversation.id, mine.id, theirs.id}
    assert row_ids(html(agent_client.get("/inbox?view=mine"))) == [mine.id]
    assert set(row_ids(html(agent_client.get("/inbox?view=unassigned")))) == {world.conversation.id}
    assert row_ids(html(agent_client.get("/inbox?folder=general"))) == [general.id]
    assert row_ids(html(agent_client.get("/inbox?folder=requests"))) == [request.id]
    assert row_ids(html(agent_client.get("/inbox?status=resolved"))) == [done.id]
    assert len(row_ids(html(agent_client.get("/inbox?status=all")))) == 4

    counts = dict(re.findall(r"<span>([A-Z][a-z]+)</span><span class=\"count\">(\d+)</span>", page))
    assert counts == {
        "Primary": "3",
        "General": "1",
        "Requests": "1",
        "Mine": "1",
        "Unassigned": "1",
        "All": "3",
    }


def test_team_view_shows_the_teams_tickets(agent_client, world):
    team = create_team(world.brand, "Returns")
    add_team_member(team, world.agent)
    routed = conversation_with(world, "return label please")
    tickets.set_team(ticket_of(routed), team.id, world.agent)
    db.session.commit()
    assert row_ids(html(agent_client.get(f"/inbox?view=team:{team.id}"))) == [routed.id]


def test_another_brands_team_is_not_a_view(agent_client, world):
    other = World("other")
    team = db.session.scalar(select(Team).where(Team.brand_id == other.brand.id)) or create_team(
        other.brand, "Theirs"
    )
    db.session.commit()
    assert agent_client.get(f"/inbox?view=team:{team.id}").status_code == 404


def test_filters_by_tag_priority_and_channel(agent_client, world):
    tagged = conversation_with(world, "refund please")
    tags.add_tag(ticket_of(tagged), "Refund", world.agent)
    urgent = conversation_with(world, "it's on fire")
    tickets.set_priority(ticket_of(urgent), Priority.URGENT, world.agent)
    db.session.commit()
    assert row_ids(html(agent_client.get("/inbox?tag=refund"))) == [tagged.id]
    assert row_ids(html(agent_client.get("/inbox?priority=urgent"))) == [urgent.id]
    channel_page = html(agent_client.get(f"/inbox?channel={world.channel.id}"))
    assert len(row_ids(channel_page)) == 3


def test_a_bad_filter_value_is_flashed_and_the_default_inbox_shown(agent_client, world):
    response = agent_client.get("/inbox?sort=loudest")
    assert response.status_code == 200
    assert "unknown sort" in html(response)
    assert row_ids(html(response)) == [world.conversation.id]


def _sla_world(world: World) -> dict[str, Conversation]:
    sla.create_policy(
        world.brand,
        world.manager,
        "Fast",
        0,
        {},
        {"first_response_min": 60},
        business_hours=False,
    )
    made = {
        "breached": conversation_with(world, "two hours ago", minutes_ago=120),
        "at_risk": conversation_with(world, "fifty minutes ago", minutes_ago=50),
        "ok": conversation_with(world, "just now", minutes_ago=1),
    }
    db.session.commit()
    return made


def test_sla_filters_and_badges(agent_client, world):
    made = _sla_world(world)
    breached = html(agent_client.get("/inbox?sla=breached"))
    assert made["breached"].id in row_ids(breached) and made["ok"].id not in row_ids(breached)
    assert "SLA breached" in breached
    at_risk = row_ids(html(agent_client.get("/inbox?sla=at_risk")))
    assert made["at_risk"].id in at_risk
    assert made["breached"].id not in at_risk and made["ok"].id not in at_risk


def test_sorts_by_sla_newest_and_longest_waiting(agent_client, world):
    made = _sla_world(world)
    by_sla = row_ids(html(agent_client.get("/inbox")))
    assert by_sla[:3] == [made["breached"].id, made["at_risk"].id, made["ok"].id]
    newest = row_ids(html(agent_client.get("/inbox?sort=newest")))
    assert newest == [world.conversation.id, made["ok"].id, made["at_risk"].id, made["breached"].id]
    waiting = row_ids(html(agent_client.get("/inbox?sort=waiting")))
    assert waiting[0] == made["breached"].id


def test_unread_until_the_agent_opens_it(agent_client, world):
    assert 'class="row unread"' in html(agent_client.get("/inbox"))
    agent_client.get(f"/conversations/{world.conversation.id}")
    assert 'class="row unread"' not in html(agent_client.get("/inbox"))
    receive(world.channel, world.contact.platform_id, "anyone there?")
    db.session.commit()
    assert 'class="row unread"' in html(agent_client.get("/inbox"))
    seen = db.session.scalar(select(ConversationView))
    assert seen.agent_id == world.agent.id


def test_pages_of_fifty(agent_client, world):
    for n in range(PAGE_SIZE + 4):
        conversation_with(world, f"message {n}")
    db.session.commit()
    first = html(agent_client.get("/inbox?sort=newest"))
    second = html(agent_client.get("/inbox?sort=newest&page=2"))
    assert len(row_ids(first)) == PAGE_SIZE and "Next page" in first
    assert len(row_ids(second)) == 5 and "Next page" not in second
    assert not set(row_ids(first)) & set(row_ids(second))


@pytest.mark.slow
def test_inbox_query_count_does_not_grow_with_rows(agent_client, world):
    """No N+1: contacts, tickets, assignees, tags and seen markers are read per page."""
    team = create_team(world.brand, "Support")

    def fill(count: int) -> None:
        for n in range(count):
            conversation = conversation_with(world, f"row {n}", username=f"user{n}_{count}")
            ticket = ticket_of(conversation)
            tags.add_tag(ticket, f"tag{n % 3}", world.agent)
            tags.add_tag(ticket, "common", world.agent)
            tickets.assign(ticket, (world.agent, world.manager)[n % 2].id, world.agent)
            tickets.set_team(ticket, team.id, world.agent)
        db.session.commit()

    def measure() -> int:
        agent_client.get("/inbox")  # warm up: the first request loads things once
        with counting_queries() as counter:
            response = agent_client.get("/inbox")
        assert response.status_code == 200
        return counter["n"]

    fill(5)
    few = measure()
    fill(PAGE_SIZE)
    assert len(row_ids(html(agent_client.get("/inbox")))) == PAGE_SIZE
    assert measure() == few
    assert few <= 20


def test_inbox_updates_poll(agent_client, world):
    since = utcnow().isoformat()
    assert agent_client.get("/inbox/updates", query_string={"since": since}).json["changed"] == 0
    receive(world.channel, world.contact.platform_id, "hello again")
    db.session.commit()
    assert agent_client.get("/inbox/updates", query_string={"since": since}).json["changed"] == 1
    assert agent_client.get("/inbox/updates?since=yesterday").status_code == 400


# Bulk actions -------------------------------------------------------------------------------------


def test_bulk_assign_tag_and_resolve(agent_client, world):
    other = conversation_with(world, "second")
    db.session.commit()
    ids = [world.conversation.id, other.id]
    response = post(
        agent_client, "/inbox/bulk", {"ids": ids, "bulk_action": "assign", "assignee_id": "me"}
    )
    assert response.status_code == 302
    assert "Updated 2 conversations" in html(agent_client.get("/inbox"))
    assert {ticket_of(c).assignee_id for c in (world.conversation, other)} == {world.agent.id}

    post(agent_client, "/inbox/bulk", {"ids": ids, "bulk_action": "tag", "tag": "Sale"})
    assert row_ids(html(agent_client.get("/inbox?tag=sale"))) == sorted(ids, reverse=True) or (
        set(row_ids(html(agent_client.get("/inbox?tag=sale")))) == set(ids)
    )
    post(agent_client, "/inbox/bulk", {"ids": ids, "bulk_action": "resolve"})
    db.session.expire_all()
    assert {ticket_of(c).status for c in (world.conversation, other)} == {TicketStatus.RESOLVED}


def test_bulk_skips_what_it_cannot_do_and_says_why(agent_client, world):
    stranger = ContactFactory(channel=world.channel)
    request = receive(world.channel, stranger.platform_id, "a request").conversation_id
    db.session.commit()
    post(
        agent_client,
        "/inbox/bulk",
        {"ids": [world.conversation.id, request], "bulk_action": "resolve"},
    )
    page = html(agent_client.get("/inbox"))
    assert "Updated 1 conversation." in page
    assert f"Skipped #{request}: no open ticket" in page


def test_bulk_without_selection_is_a_flash(agent_client, world):
    post(agent_client, "/inbox/bulk", {"bulk_action": "resolve"})
    assert "select at least one conversation" in html(agent_client.get("/inbox"))


# Conversation page --------------------------------------------------------------------------------


@pytest.mark.slow
def test_demo_conversations_render_every_message_kind(client):
    seed_demo()
    db.session.commit()
    assert login(client, "admin@demo.test", "demo-admin-pass").status_code == 302
    ids = db.session.scalars(select(Conversation.id).order_by(Conversation.id)).all()
    pages = []
    for conversation_id in ids:
        response = client.get(f"/conversations/{conversation_id}")
        assert response.status_code == 200, conversation_id
        pages.append(html(response))
    everything = "\n".join(pages)
    for marker in (
        '<img src="https://lookaside.fbsbx.com',  # image
        'class="media-sticker"',
        'class="media-gif"',
        '<video class="media" controls',
        "<audio controls",
        "receipt.pdf",  # file card
        "Shared post",
        "Replied to your story",
        "Mentioned you in their story",
        "Demo Brand Store Kreuzberg",  # location card
        "Open map",
        "Trail Runner - Black",  # product card
        "SKU TR-44-BLK",
        "Tapped a button",
        "can't be shown here",  # unsupported
        "Message unsent",
        "Vanished (vanish mode)",
        "Vanish mode is on",
        "edited</summary>",
        'class="quote"',
        'class="reaction"',
        'class="sender"',  # group members are named
        "Bridesmaids",
        "Reply window",
        'rel="noopener noreferrer nofollow">https://track.demo-brand.example',
    ):
        assert marker in everything, marker


@pytest.mark.slow
def test_agent_sees_demo_logins_work(client):
    seed_demo()
    db.session.commit()
    assert login(client, "agent@demo.test", "demo-agent-pass").status_code == 302
    assert client.get("/inbox").status_code == 200


def test_thread_is_oldest_first_with_notes_inline(agent_client, world):
    receive(world.channel, world.contact.platform_id, "second message")
    notes_ticket = ticket_of(world.conversation)
    from helpdesk.tickets import notes

    notes.add_note(notes_ticket, world.agent, "Checked the warehouse")
    db.session.commit()
    page = html(agent_client.get(f"/conversations/{world.conversation.id}"))
    first, second, note = (
        page.index("Where is my order?"),
        page.index("second message"),
        page.index("Checked the warehouse"),
    )
    assert first < second < note
    assert "Internal note" in page


def test_long_threads_show_the_latest_hundred_and_load_earlier(agent_client, world):
    start = utcnow() - timedelta(hours=3)
    for n in range(130):
        receive(
            world.channel,
            world.contact.platform_id,
            f"msg-{n:03d}",
            at=start + timedelta(seconds=n),
        )
    db.session.commit()
    page = html(agent_client.get(f"/conversations/{world.conversation.id}"))
    # The latest hundred: the first message (sent just now) and msg-031 to msg-129.
    assert "Where is my order?" in page and "msg-031" in page and "msg-030" not in page
    earlier = re.search(r'href="([^"]*before=\d+)"', page).group(1).replace("&amp;", "&")
    older = html(agent_client.get(earlier))
    assert "msg-030" in older and "msg-000" in older and "msg-031" not in older
    assert "Load earlier messages" not in older and "Back to the latest messages" in older


@pytest.mark.slow
def test_conversation_page_query_count_does_not_grow_with_messages(agent_client, world):
    def add(count: int) -> None:
        last = None
        for n in range(count):
            message = receive(world.channel, world.contact.platform_id, f"m{n}")
            if n % 5 == 0:
                dm.react(message, "❤️", agent=world.agent)
            if n % 7 == 0 and last is not None:
                reply = receive(
                    world.channel, world.contact.platform_id, "quoting", reply_to_mid=last.mid
                )
                dm.react(reply, "👍", contact=world.contact)
            if n % 11 == 0:
                dm.edit_message(message, f"m{n} (edited)")
            last = message
        db.session.commit()

    def measure() -> int:
        url = f"/conversations/{world.conversation.id}"
        agent_client.get(url)
        with counting_queries() as counter:
            assert agent_client.get(url).status_code == 200
        return counter["n"]

    add(20)
    small = measure()
    add(480)
    assert measure() == small
    assert small <= 40


def test_window_countdown_and_sla_timers_carry_their_due_times(agent_client, world):
    sla.create_policy(world.brand, world.manager, "All", 0, {}, {"first_response_min": 30}, False)
    db.session.commit()
    page = html(agent_client.get(f"/conversations/{world.conversation.id}"))
    closes = dm.window_closes_at(world.conversation, human=False)
    assert f'data-due="{closes.isoformat()}"' in page
    assert "human agent until" in page
    due = ticket_of(world.conversation).first_response_due_at
    assert f'data-due="{due.isoformat()}"' in page


def test_after_24_hours_the_human_agent_extension_is_shown(agent_client, world):
    old = conversation_with(world, "two days ago", minutes_ago=48 * 60)
    db.session.commit()
    page = html(agent_client.get(f"/conversations/{old.id}"))
    assert "24 h window closed" in page and "human agent window" in page


def test_group_conversations_name_their_participants(agent_client, world):
    people = [ContactFactory(channel=world.channel, name=f"Friend {n}") for n in range(3)]
    group = dm.create_group(world.channel, "thread-1", people, title="Friends")
    receive(world.channel, people[1].platform_id, "hi all", thread_key="thread-1")
    db.session.commit()
    page = html(agent_client.get(f"/conversations/{group.id}"))
    assert "Friend 1</div>" in page and "Participants" in page and "Friend 2" in page


# Replying -----------------------------------------------------------------------------------------


@pytest.fixture
def broker(app):
    """The real broker, emptied first: `broker()` takes what the console handed to the workers."""
    queueing.reset()
    drain_broker(app)
    return lambda: drain_broker(app)


def test_reply_is_queued_then_enqueued_after_commit(agent_client, world, broker):
    response = post(
        agent_client,
        f"/conversations/{world.conversation.id}/reply",
        {"text": "It ships today!", "reply_to": world.message.id},
    )
    assert response.status_code == 302
    message = db.session.scalar(select(Message).where(Message.text == "It ships today!"))
    assert message.status is MessageStatus.QUEUED
    assert message.author_agent_id == world.agent.id
    assert message.reply_to_id == world.message.id
    assert broker() == [(queueing.DELIVER_MESSAGE, [message.id])]
    page = html(agent_client.get(f"/conversations/{world.conversation.id}"))
    assert "It ships today!" in page and "Reply queued" in page


def test_reply_with_attachment_by_url(agent_client, world, broker):
    post(
        agent_client,
        f"/conversations/{world.conversation.id}/reply",
        {
            "text": "",
            "attachment_type": ["image", "file"],
            "attachment_url": ["https://cdn.example/size-chart.png", ""],
        },
    )
    message = db.session.scalar(select(Message).where(Message.direction == "outbound"))
    assert message.kind is MessageKind.IMAGE
    assert message.attachments == [{"type": "image", "url": "https://cdn.example/size-chart.png"}]


def test_refused_reply_keeps_the_typed_text(agent_client, world, broker):
    old = conversation_with(world, "last week", minutes_ago=8 * 24 * 60)
    db.session.commit()
    typed = "Sorry for the wait — here's what happened <details>"
    response = post(agent_client, f"/conversations/{old.id}/reply", {"text": typed})
    assert response.status_code == 409
    page = html(response)
    assert "The customer last wrote 8 days ago. Instagram allows replies for 7 days" in page
    said = re.findall(r'class="flash[^"]*">([^<]*)<|id="window-closed"[^>]*>([^<]*)<', page)
    assert said and not re.search(r"\d{4}-\d{2}-\d{2}|Error|reply_window", str(said))
    assert "Sorry for the wait — here&#39;s what happened &lt;details&gt;</textarea>" in page
    assert broker() == []
    assert db.session.scalar(select(Message).where(Message.direction == "outbound")) is None


def test_refused_attachment_keeps_everything_typed(agent_client, world, broker):
    response = post(
        agent_client,
        f"/conversations/{world.conversation.id}/reply",
        {
            "text": "see attached",
            "attachment_type": "image",
            "attachment_url": "javascript:alert(1)",
        },
    )
    assert response.status_code == 422
    page = html(response)
    assert "an attachment URL must be http(s)" in page
    assert "see attached</textarea>" in page
    assert 'value="javascript:alert(1)"' in page  # shown back in the input, never used as a link


def test_unfilled_placeholders_are_refused_before_sending(agent_client, world, broker):
    response = post(
        agent_client,
        f"/conversations/{world.conversation.id}/reply",
        {"text": "Hi {{ contact.first_name }}, thanks!"},
    )
    assert response.status_code == 422
    assert "Fill in the highlighted" in html(response)
    assert broker() == []


def test_scheduled_reply_is_typed_in_the_brand_time_zone(agent_client, world, broker):
    local = (utcnow() + timedelta(hours=3)).astimezone(ZoneInfo(world.brand.timezone))
    typed = local.strftime("%Y-%m-%dT%H:%M")
    post(
        agent_client,
        f"/conversations/{world.conversation.id}/reply",
        {"text": "Later!", "send_at": typed},
    )
    message = db.session.scalar(select(Message).where(Message.text == "Later!"))
    assert message.status is MessageStatus.SCHEDULED
    expected = datetime.fromisoformat(typed).replace(tzinfo=ZoneInfo(world.brand.timezone))
    assert message.send_at == expected.astimezone(UTC)
    assert broker() == []
    assert "Scheduled for" in html(agent_client.get(f"/conversations/{world.conversation.id}"))


def test_replying_to_a_message_of_another_conversation_is_a_404(agent_client, world):
    other = conversation_with(world, "other thread")
    db.session.commit()
    foreign = db.session.scalar(select(Message).where(Message.conversation_id == other.id))
    response = post(
        agent_client,
        f"/conversations/{world.conversation.id}/reply",
        {"text": "hi", "reply_to": foreign.id},
    )
    assert response.status_code == 404


def test_reply_prefills_the_quoted_message(agent_client, world):
    page = html(
        agent_client.get(f"/conversations/{world.conversation.id}?reply_to={world.message.id}")
    )
    assert f'name="reply_to" id="reply-to" value="{world.message.id}"' in page


def test_replying_to_a_request_accepts_it(agent_client, world, broker):
    stranger = ContactFactory(channel=world.channel)
    conversation_id = receive(world.channel, stranger.platform_id, "hello?").conversation_id
    db.session.commit()
    post(agent_client, f"/conversations/{conversation_id}/reply", {"text": "Hi there"})
    conversation = db.session.get(Conversation, conversation_id)
    db.session.refresh(conversation)
    assert conversation.request_state is RequestState.ACCEPTED
    assert conversation.current_ticket_id is not None


# Notes and mentions -------------------------------------------------------------------------------


def test_note_with_mention_notifies_the_colleague(agent_client, world):
    handle = world.manager.email.split("@")[0]
    response = post(
        agent_client,
        f"/conversations/{world.conversation.id}/note",
        {"text": f"@{handle} can you check this refund?"},
    )
    assert response.status_code == 302
    note = db.session.scalar(select(Note))
    assert note.mentions == [world.manager.id]
    alert = db.session.scalar(select(Notification).where(Notification.agent_id == world.manager.id))
    assert alert.kind is NotificationKind.MENTION


def test_note_on_a_request_is_refused_and_kept(agent_client, world):
    stranger = ContactFactory(channel=world.channel)
    conversation_id = receive(world.channel, stranger.platform_id, "hello?").conversation_id
    db.session.commit()
    response = post(
        agent_client, f"/conversations/{conversation_id}/note", {"text": "spam, probably"}
    )
    assert response.status_code == 409
    assert "spam, probably</textarea>" in html(response)


def test_mention_candidates_json(agent_client, world):
    prefix = world.manager.email[:4]
    items = agent_client.get(f"/mentions?q={prefix}").json["items"]
    assert world.manager.id in [item["id"] for item in items]


# Canned replies -----------------------------------------------------------------------------------


def test_canned_search_and_render(agent_client, world):
    reply = canned.create(
        world.brand,
        world.manager,
        "refund",
        "Refund policy",
        "Hi {{ contact.first_name }}, refunds take 5 days. {{ agent.first_name }}",
        shared=True,
    )
    canned.create(world.brand, world.manager, "late", "Late", "Hi {{ contact.username }}", shared=1)
    db.session.commit()
    found = agent_client.get("/canned/search?q=ref").json["items"]
    assert [item["shortcode"] for item in found] == ["refund"]
    words = agent_client.get("/canned/search?q=refunds take").json["items"]
    assert [item["id"] for item in words] == [reply.id]

    rendered = agent_client.get(
        f"/canned/{reply.id}/render?conversation_id={world.conversation.id}"
    ).json
    assert rendered["text"] == f"Hi Jane, refunds take 5 days. {world.agent.first_name}"
    assert rendered["missing"] == []


def test_canned_render_flags_missing_placeholders(agent_client, world):
    nameless = ContactFactory(channel=world.channel, followed_by_brand=True, name=None)
    conversation_id = receive(world.channel, nameless.platform_id, "yo").conversation_id
    nameless.username = None
    reply = canned.create(
        world.brand, world.manager, "hi", "Hi", "Hi {{ contact.first_name }}!", shared=True
    )
    db.session.commit()
    rendered = agent_client.get(f"/canned/{reply.id}/render?conversation_id={conversation_id}")
    assert rendered.json["missing"] == ["contact.first_name"]
    assert "{{ contact.first_name }}" in rendered.json["text"]


def test_someone_elses_personal_canned_reply_is_not_found(agent_client, world):
    private = canned.create(world.brand, world.manager, "mine", "Mine", "Secret text")
    db.session.commit()
    assert agent_client.get("/canned/search?q=mine").json["items"] == []
    response = agent_client.get(
        f"/canned/{private.id}/render?conversation_id={world.conversation.id}"
    )
    assert response.status_code == 404
    assert response.json["error"]["code"] == "not_found"


# Actions ------------------------------------------------------------------------------------------


def test_take_assign_and_unassign(agent_client, world):
    base = f"/conversations/{world.conversation.id}"
    assert post(agent_client, f"{base}/take").status_code == 302
    assert ticket_of(world.conversation).assignee_id == world.agent.id
    post(agent_client, f"{base}/assign", {"assignee_id": world.manager.id})
    assert ticket_of(world.conversation).assignee_id == world.manager.id
    post(agent_client, f"{base}/unassign")
    assert ticket_of(world.conversation).assignee_id is None


def test_taking_a_ticket_someone_just_took_is_a_flash(agent_client, world):
    tickets.take(ticket_of(world.conversation), world.manager)
    db.session.commit()
    response = post(agent_client, f"/conversations/{world.conversation.id}/take")
    assert response.status_code == 302
    assert "Someone else has just taken this ticket" in html(
        agent_client.get(f"/conversations/{world.conversation.id}")
    )
    assert ticket_of(world.conversation).assignee_id == world.manager.id


def test_assigning_to_another_brands_agent_is_refused(agent_client, world):
    outsider = AgentFactory()
    db.session.commit()
    post(
        agent_client,
        f"/conversations/{world.conversation.id}/assign",
        {"assignee_id": outsider.id},
    )
    assert ticket_of(world.conversation).assignee_id is None


def test_status_priority_team_and_snooze(agent_client, world):
    base = f"/conversations/{world.conversation.id}"
    team = create_team(world.brand, "Billing")
    db.session.commit()
    post(agent_client, f"{base}/status", {"status": "pending"})
    assert ticket_of(world.conversation).status is TicketStatus.PENDING
    post(agent_client, f"{base}/priority", {"priority": "high"})
    assert ticket_of(world.conversation).priority is Priority.HIGH
    post(agent_client, f"{base}/team", {"team_id": team.id})
    assert ticket_of(world.conversation).team_id == team.id
    post(agent_client, f"{base}/status", {"status": "snoozed", "snooze": "1h"})
    ticket = ticket_of(world.conversation)
    assert ticket.status is TicketStatus.SNOOZED
    assert timedelta(minutes=59) < ticket.snoozed_until - utcnow() <= timedelta(hours=1)
    local = (utcnow() + timedelta(days=2)).astimezone(ZoneInfo(world.brand.timezone))
    post(
        agent_client,
        f"{base}/status",
        {"status": "snoozed", "snooze": "", "snooze_until": local.strftime("%Y-%m-%dT%H:%M")},
    )
    assert ticket_of(world.conversation).snoozed_until.astimezone(
        ZoneInfo(world.brand.timezone)
    ).strftime("%Y-%m-%dT%H:%M") == local.strftime("%Y-%m-%dT%H:%M")
    post(agent_client, f"{base}/status", {"status": "resolved"})
    assert ticket_of(world.conversation).status is TicketStatus.RESOLVED


def test_snoozing_into_the_past_is_a_flash(agent_client, world):
    base = f"/conversations/{world.conversation.id}"
    post(
        agent_client,
        f"{base}/status",
        {"status": "snoozed", "snooze": "", "snooze_until": "2001-01-01T09:00"},
    )
    assert "snoozing needs a time in the future" in html(agent_client.get(base))
    assert ticket_of(world.conversation).status is TicketStatus.OPEN


def test_tags_add_and_remove(agent_client, world):
    base = f"/conversations/{world.conversation.id}"
    post(agent_client, f"{base}/tags", {"name": "Warranty"})
    assert ">Warranty" in html(agent_client.get(base))
    post(agent_client, f"{base}/tags/remove", {"name": "warranty"})
    assert tags.ticket_tag_names([ticket_of(world.conversation).id]) == {
        ticket_of(world.conversation).id: []
    }
    post(agent_client, f"{base}/tags/remove", {"name": "never-there"})
    assert "is not tagged" in html(agent_client.get(base))


@pytest.mark.parametrize(
    "action,state", [("accept", "accepted"), ("decline", "declined"), ("block", "blocked")]
)
def test_request_accept_decline_block(agent_client, world, action, state):
    stranger = ContactFactory(channel=world.channel)
    conversation_id = receive(world.channel, stranger.platform_id, "hello?").conversation_id
    db.session.commit()
    response = post(agent_client, f"/conversations/{conversation_id}/request", {"action": action})
    assert response.status_code == 302
    conversation = db.session.get(Conversation, conversation_id)
    db.session.refresh(conversation)
    assert conversation.request_state.value == state
    assert (conversation.current_ticket_id is not None) == (action == "accept")


def test_move_between_primary_and_general(agent_client, world):
    base = f"/conversations/{world.conversation.id}"
    post(agent_client, f"{base}/folder", {"folder": "general"})
    assert row_ids(html(agent_client.get("/inbox?folder=general"))) == [world.conversation.id]


def test_mute_a_conversation(agent_client, world):
    post(
        agent_client,
        f"/conversations/{world.conversation.id}/notifications",
        {"level": "muted"},
    )
    assert dm.notification_level(world.agent.id, world.conversation.id) is NotificationLevel.MUTED


def test_block_a_contact_from_the_contact_panel(agent_client, world):
    post(agent_client, f"/conversations/{world.conversation.id}/contact/block")
    db.session.refresh(world.contact)
    assert world.contact.blocked


def test_react_and_unreact_as_the_brand(agent_client, world, broker):
    path = f"/conversations/{world.conversation.id}/messages/{world.message.id}/react"
    post(agent_client, path, {"emoji": "❤️"})
    reaction = db.session.scalar(select(Reaction))
    assert reaction.emoji == "❤️" and reaction.reactor == "brand"
    assert 'class="reaction" title="Brand">❤️' in html(
        agent_client.get(f"/conversations/{world.conversation.id}")
    )
    post(agent_client, path, {"emoji": ""})
    assert db.session.scalar(select(Reaction)) is None
    assert broker() == [
        (queueing.DELIVER_REACTION, [world.message.id, "❤️"]),
        (queueing.DELIVER_REACTION, [world.message.id, None]),
    ]


def test_availability_toggle(agent_client, world):
    post(agent_client, "/availability", {"availability": "online"})
    db.session.refresh(world.agent)
    assert world.agent.availability is Availability.ONLINE
    post(agent_client, "/availability", {"availability": "sleeping"})
    assert "unknown availability" in html(agent_client.get("/inbox"))


def test_leaving_the_page_marks_the_viewer_gone(agent_client, world):
    assert post(agent_client, f"/conversations/{world.conversation.id}/leave").status_code == 204
    db.session.refresh(world.conversation)
    assert world.conversation.viewer_left_at is not None


def test_the_open_page_gets_newer_messages_rendered_by_the_server(agent_client, world):
    url = f"/conversations/{world.conversation.id}/thread/newer?after={world.message.id}"
    assert 'class="msg' not in html(agent_client.get(url))
    message = receive(world.channel, world.contact.platform_id, "ping <b>bold</b>")
    db.session.commit()
    fragment = html(agent_client.get(url))
    assert f'id="m{message.id}"' in fragment
    assert "ping &lt;b&gt;bold&lt;/b&gt;" in fragment
    assert f'id="m{world.message.id}"' not in fragment
    assert '<div class="day">' not in fragment  # same day as the message it follows


# Search -------------------------------------------------------------------------------------------


def test_search_finds_messages_and_contacts_of_the_brand_only(agent_client, world):
    other = World("other")
    receive(other.channel, other.contact.platform_id, "my parcel is lost")
    receive(world.channel, world.contact.platform_id, "The parcel never arrived")
    db.session.commit()
    page = html(agent_client.get("/search?q=parcel"))
    assert "The parcel never arrived" in page
    assert "my parcel is lost" not in page
    contacts = html(agent_client.get("/search?q=jane"))
    assert "@jane.doe" in contacts
    assert html(agent_client.get("/search?q=")).count('class="hit"') == 0


def test_search_needs_every_word(agent_client, world):
    receive(world.channel, world.contact.platform_id, "refund for the blue shoes")
    receive(world.channel, world.contact.platform_id, "refund for the red hat")
    db.session.commit()
    page = html(agent_client.get("/search?q=refund shoes"))
    assert "blue shoes" in page and "red hat" not in page


def test_search_leaves_blocked_contacts_out(agent_client, world):
    world.contact.blocked = True
    db.session.flush()
    receive(world.channel, world.contact.platform_id, "spammy spam")
    db.session.commit()
    assert "spammy spam" not in html(agent_client.get("/search?q=spammy"))


def test_postgres_search_uses_the_full_text_index(app, world, is_postgres):
    if not is_postgres:
        pytest.skip("the GIN index exists on PostgreSQL only")
    from sqlalchemy import func, text

    from helpdesk.search.models import FTS_CONFIG, message_tsvector

    with db.engine.connect() as conn:
        conn.execute(text("SET enable_seqscan = off"))
        query = select(Message.id).where(
            message_tsvector().op("@@")(func.plainto_tsquery(FTS_CONFIG, "order"))
        )
        compiled = query.compile(conn, compile_kwargs={"literal_binds": True})
        plan = "\n".join(r[0] for r in conn.execute(text(f"EXPLAIN {compiled}")))
    assert "ix_messages_text_fts" in plan


# Notifications ------------------------------------------------------------------------------------


def test_notifications_panel_badge_and_mark_read(agent_client, world):
    tickets.assign(ticket_of(world.conversation), world.agent.id, world.manager)
    db.session.commit()
    page = html(agent_client.get("/inbox"))
    assert 'id="notification-badge">1<' in page
    panel = html(agent_client.get("/notifications"))
    assert "was assigned to you" in panel
    notification = db.session.scalar(select(Notification))
    post(
        agent_client,
        f"/notifications/{notification.id}/read",
        {"next": f"/conversations/{world.conversation.id}"},
    )
    db.session.refresh(notification)
    assert notification.read_at is not None
    assert 'id="notification-badge"' not in html(agent_client.get("/inbox"))


def test_mark_all_read(agent_client, world):
    from helpdesk.notifications.service import notify

    for kind in (NotificationKind.SLA_WARNING, NotificationKind.SLA_BREACH):
        notify(world.agent.id, world.brand.id, kind, f"{kind.value} on #1")
    db.session.commit()
    panel = html(agent_client.get("/notifications"))
    assert "SLA warning" in panel and "SLA breach" in panel
    post(agent_client, "/notifications/read-all")
    assert all(n.read_at for n in db.session.scalars(select(Notification)))


def test_managers_see_the_same_console(client, world):
    signed_in(client, world.manager)
    assert client.get(f"/conversations/{world.conversation.id}").status_code == 200


def test_roles_are_per_brand(client, world):
    other = World("other")
    member(world.agent, other.brand, Role.ADMIN)
    db.session.commit()
    signed_in(client, world.agent)
    assert client.get("/inbox?folder=hidden").status_code == 403  # agent in the first brand
    post(client, "/brand", {"brand_id": other.brand.id})
    assert client.get("/inbox?folder=hidden").status_code == 200  # admin in the other


def test_inbox_reply_via_service_shows_in_thread_with_status(agent_client, world):
    message = inbox.reply(world.conversation, world.agent, text="Queued answer")
    message.status = MessageStatus.FAILED
    message.error = "The reply window closed before delivery"
    db.session.commit()
    page = html(agent_client.get(f"/conversations/{world.conversation.id}"))
    assert "status-failed" in page and "The reply window closed before delivery" in page


@pytest.mark.parametrize(
    ("name", "shown"),
    [("Jane Doe", "JD"), ("@lena.k", "LK"), ("@tom_outdoors", "TO"), ("maria", "M"), ("", "?")],
)
def test_an_avatar_shows_the_initials_of_a_name_or_a_handle(name, shown):
    assert initials(name) == shown
