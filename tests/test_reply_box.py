"""An honest reply box: nothing reaches the customer by mistake, Instagram's byte limit is said
before sending and long text can be split, the closed window is explained in words; and ticket
forms of a stale page change nothing."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import select

from helpdesk.dm.models import Direction, Message
from helpdesk.dm.text import MAX_TEXT_BYTES, byte_length, split_text
from helpdesk.extensions import db
from helpdesk.inbox import service as inbox
from helpdesk.tickets import service as tickets
from helpdesk.tickets.models import TicketStatus
from helpdesk.types import utcnow
from tests.conftest import table_counts
from tests.helpers.console import post, signed_in
from tests.helpers.world import receive


@pytest.fixture
def agent(client, world):
    return signed_in(client, world.agent)


def outbound() -> list[Message]:
    db.session.expire_all()
    return list(
        db.session.scalars(
            select(Message).where(Message.direction == Direction.OUTBOUND).order_by(Message.id)
        )
    )


def page_of(response) -> str:
    return response.get_data(as_text=True)


@pytest.mark.parametrize("typed", ["/", "/\r\n", "  /  ", "/refund", "   ", "\r\n\t"])
def test_a_lone_slash_or_blank_text_is_never_sent(agent, world, typed):
    agent.get(f"/conversations/{world.conversation.id}")  # the page the agent typed in
    before = table_counts()
    response = post(agent, f"/conversations/{world.conversation.id}/reply", {"text": typed})
    assert response.status_code == 422
    assert table_counts() == before


def test_a_lone_shortcode_is_refused_through_the_api_too(client, world):
    from tests.helpers.api import API, error_of, token_for

    token = token_for(world.brand)
    response = client.post(
        f"{API}/conversations/{world.conversation.id}/messages",
        json={"text": "/refund"},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert response.status_code == 422
    assert "pick a canned reply" in error_of(response)["message"]
    placeholder = client.post(
        f"{API}/conversations/{world.conversation.id}/messages",
        json={"text": "Hi {{ contact.first_name }}"},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert placeholder.status_code == 422
    assert outbound() == []


def test_line_breaks_are_sent_as_the_customer_sees_them(agent, world):
    post(agent, f"/conversations/{world.conversation.id}/reply", {"text": "Hi!\r\n\r\nThanks \r\n"})
    assert [m.text for m in outbound()] == ["Hi!\n\nThanks"]


def test_over_the_byte_limit_is_refused_with_the_count_and_the_text_kept(agent, world):
    typed = "Thanks 🙏🙏🙏. " * 60  # 60 × 22 bytes: short in characters, long in bytes
    assert len(typed) < 1000 < byte_length(typed.strip())
    response = post(agent, f"/conversations/{world.conversation.id}/reply", {"text": typed})
    assert response.status_code == 422
    page = page_of(response)
    assert f"This message is {byte_length(typed.strip())} bytes" in page
    assert "send it as 2 messages" in page
    assert typed.strip()[:40] in page
    assert outbound() == []


def test_split_sends_several_messages_cut_between_sentences(agent, world):
    sentences = [f"Sentence number {i} is about your order 📦." for i in range(60)]
    typed = " ".join(sentences)
    response = post(
        agent, f"/conversations/{world.conversation.id}/reply", {"text": typed, "split": "1"}
    )
    assert response.status_code == 302
    sent = [m.text for m in outbound()]
    assert len(sent) == len(split_text(typed)) > 1
    assert all(byte_length(text) <= MAX_TEXT_BYTES for text in sent)
    assert " ".join(sent) == typed  # nothing lost, every cut after a full stop
    assert all(text.endswith(".") for text in sent)


@given(st.text(alphabet=st.characters(blacklist_categories=["Cs"]), max_size=3000))
def test_split_text_never_exceeds_the_limit_and_keeps_every_word(text):
    parts = split_text(text)
    assert all(0 < byte_length(part) <= MAX_TEXT_BYTES for part in parts)
    assert "".join("".join(parts).split()) == "".join(text.split())


def test_the_reply_box_counts_bytes_and_offers_to_split(agent, world):
    page = page_of(agent.get(f"/conversations/{world.conversation.id}"))
    assert 'data-max-bytes="1000"' in page
    assert 'id="byte-count"' in page and 'id="split-send"' in page


def test_a_closed_window_disables_the_reply_box_and_says_why(agent, world):
    old = receive(world.channel, world.contact.platform_id, "Hello?",
                  at=utcnow() - timedelta(days=8))  # fmt: skip
    world.conversation.last_inbound_at = old.sent_at
    db.session.commit()
    page = page_of(agent.get(f"/conversations/{world.conversation.id}"))
    explained = re.search(r'id="window-closed"[^>]*>([^<]+)<', page).group(1)
    assert explained.startswith("The customer last wrote 8 days ago. Instagram allows replies")
    assert "you can reply again once they write" in explained
    assert re.search(r'<button type="submit" class="btn btn-primary reply-btn"\s+disabled', page)
    assert "data-window-closed" in page


# Stale pages --------------------------------------------------------------------------------------


def test_signed_in_pages_are_not_stored_by_the_browser(agent, world, client):
    for path in ("/inbox", f"/conversations/{world.conversation.id}", "/search?q=x"):
        assert agent.get(path).headers["Cache-Control"] == "no-store"
    client.get("/logout")


def test_a_status_change_from_a_stale_page_is_refused(agent, world):
    page = page_of(agent.get(f"/conversations/{world.conversation.id}"))
    seen = re.search(r'name="ticket_state" value="([^"]+)"', page).group(1)
    ticket = tickets.current_ticket(world.conversation)
    tickets.set_status(ticket, TicketStatus.RESOLVED, world.manager)
    db.session.commit()
    before = table_counts()
    response = post(
        agent,
        f"/conversations/{world.conversation.id}/status",
        {"status": "open", "ticket_state": seen},
        follow_redirects=True,
    )
    assert "This ticket changed since this page was loaded (it is now resolved" in page_of(response)
    assert table_counts() == before
    db.session.refresh(ticket)
    assert ticket.status is TicketStatus.RESOLVED


def test_a_change_from_a_current_page_goes_through(agent, world):
    page = page_of(agent.get(f"/conversations/{world.conversation.id}"))
    seen = re.search(r'name="ticket_state" value="([^"]+)"', page).group(1)
    post(agent, f"/conversations/{world.conversation.id}/priority",
         {"priority": "urgent", "ticket_state": seen})  # fmt: skip
    ticket = tickets.current_ticket(world.conversation)
    db.session.refresh(ticket)
    assert ticket.priority.value == "urgent"


def test_every_ticket_form_carries_the_state_it_showed(agent, world):
    page = page_of(agent.get(f"/conversations/{world.conversation.id}"))
    forms = re.findall(
        r"<form[^>]*action=\"/conversations/\d+/(status|priority|assign|take|unassign|team)\""
        r"[^>]*>(.*?)</form>",
        page,
        re.S,
    )
    assert forms
    assert all('name="ticket_state"' in body for _action, body in forms)


def test_inbox_service_still_replies_without_the_console(world):
    message = inbox.reply(world.conversation, world.agent, text="Plain service call")
    assert message.text == "Plain service call"
