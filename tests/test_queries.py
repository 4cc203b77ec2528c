"""One query vocabulary: the console and the REST API ask the same domain queries, so "in the
inbox", "breached" and "at risk" mean one thing each, and `%` and `_` typed into any search match
themselves."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from helpdesk.accounts.models import Role
from helpdesk.canned import service as canned
from helpdesk.dm import service as dm
from helpdesk.dm.models import Contact, Conversation, Folder, RequestState
from helpdesk.extensions import db
from helpdesk.inbox import service as inbox
from helpdesk.inbox.filters import InboxFilter
from helpdesk.inbox.folders import INBOX_FOLDERS
from helpdesk.inbox.queries import inbox_page
from helpdesk.search.service import search
from helpdesk.sla import service as sla
from helpdesk.tickets import notes
from helpdesk.tickets.models import Ticket
from helpdesk.tickets.queries import sla_state
from tests.factories import AgentFactory, ContactFactory, member
from tests.helpers.api import Client, Desk, make_desk, token_for, write


@pytest.fixture
def desk() -> Desk:
    return make_desk("acme")


@pytest.fixture
def api(client, desk) -> Client:
    return Client(client, token_for(desk.brand, Role.ADMIN))


def api_ids(api: Client, path: str) -> set[int]:
    response = api.get(path)
    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    assert body["next_cursor"] is None
    return {item["id"] for item in body["items"]}


def console_ids(desk: Desk, **choices: str) -> set[int]:
    """What the console's inbox lists (all statuses), through the query its page runs."""
    page = inbox_page(InboxFilter(status="all", **choices), desk.brand.id, desk.agent.id)
    assert not page.has_next
    return {row.conversation.id for row in page.rows}


def conversation_of(message) -> Conversation:
    return db.session.get(Conversation, message.conversation_id)


# In the inbox -------------------------------------------------------------------------------------


@pytest.fixture
def every_state(desk: Desk) -> dict[str, Conversation]:
    """A conversation in each request state and folder, and one whose stored folder disagrees
    with its request state (a pending request filed under Primary)."""
    desk.brand.hidden_words = ["giveaway"]
    made = {"known": desk.conversation}
    made["pending"] = conversation_of(write(desk.channel, "q-1", "stranger-1"))
    made["hidden"] = conversation_of(write(desk.channel, "q-2", "stranger-2", text="giveaway!"))
    made["accepted"] = conversation_of(write(desk.channel, "q-3", "stranger-3"))
    inbox.accept(made["accepted"], None)
    made["general"] = conversation_of(write(desk.channel, "q-4", "stranger-4"))
    inbox.accept(made["general"], None)
    dm.move_to_folder(made["general"], "general")
    made["declined"] = conversation_of(write(desk.channel, "q-5", "stranger-5"))
    dm.decline_request(made["declined"])
    made["blocked"] = conversation_of(write(desk.channel, "q-6", "stranger-6"))
    dm.block_contact(db.session.get(Contact, made["blocked"].contact_id))
    made["misfiled"] = conversation_of(write(desk.channel, "q-7", "stranger-7"))
    made["misfiled"].folder = Folder.PRIMARY
    db.session.commit()
    assert made["misfiled"].request_state is RequestState.PENDING
    return made


def test_the_api_lists_each_folder_as_the_console_does(api, desk, every_state):
    for folder in INBOX_FOLDERS:
        assert api_ids(api, f"/conversations?folder={folder}&limit=100") == console_ids(
            desk, folder=folder
        ), folder


def test_the_api_inbox_is_the_consoles_three_folders_together(api, desk, every_state):
    together = set().union(*(console_ids(desk, folder=folder) for folder in INBOX_FOLDERS))
    made = every_state
    assert together == {
        made[name].id for name in ("known", "pending", "accepted", "general", "misfiled")
    }
    assert api_ids(api, "/conversations?limit=100") == together


def test_a_misfiled_request_is_a_request_in_the_api_too(api, desk, every_state):
    """A fix: the API used to filter on the stored folder alone and listed a pending request
    filed under Primary in Primary; like the console, it is in Requests by its state."""
    misfiled = every_state["misfiled"].id
    assert misfiled not in api_ids(api, "/conversations?folder=primary&limit=100")
    assert misfiled in api_ids(api, "/conversations?folder=requests&limit=100")


def test_an_explicit_request_state_still_lists_that_state(api, desk, every_state):
    assert api_ids(api, "/conversations?request_state=declined") == {every_state["declined"].id}
    assert api_ids(api, "/conversations?request_state=blocked") == {every_state["blocked"].id}
    assert api_ids(api, "/conversations?request_state=hidden") == {every_state["hidden"].id}


# Breached and at risk -----------------------------------------------------------------------------


def ticket_of(conversation: Conversation) -> Ticket:
    return db.session.get(Ticket, conversation.current_ticket_id)


@pytest.fixture
def clocks(desk: Desk) -> dict[str, Ticket]:
    """Tickets under a one-hour first-response target: past due, past the warning, fresh, and a
    fresh one whose earlier breach is recorded although its running clock is fine."""
    sla.create_policy(
        desk.brand, None, "Fast", 0, {}, {"first_response_min": 60}, business_hours=False
    )
    made = {}
    for name, minutes_ago in (("late", 120), ("risky", 50), ("fresh", 1), ("recorded", 2)):
        known = ContactFactory(channel=desk.channel, followed_by_brand=True)
        message = write(desk.channel, f"s-{name}", known.platform_id, minutes_ago=minutes_ago)
        made[name] = ticket_of(conversation_of(message))
    made["recorded"].breached = ["first_response"]
    db.session.commit()
    return made


@pytest.mark.parametrize("state", ["breached", "at_risk"])
def test_the_console_and_the_api_agree_on_the_sla_filters(api, desk, clocks, state):
    console = {
        ticket_of(db.session.get(Conversation, conversation_id)).id
        for folder in INBOX_FOLDERS
        for conversation_id in console_ids(desk, folder=folder, sla=state)
    }
    every_ticket = db.session.scalars(select(Ticket).where(Ticket.brand_id == desk.brand.id))
    by_row = {ticket.id for ticket in every_ticket if sla_state(ticket) == state}
    assert api_ids(api, f"/tickets?sla={state}&limit=100") == console == by_row
    expected = {"breached": "late", "at_risk": "risky"}[state]
    assert console == {clocks[expected].id}


def test_a_recorded_breach_with_a_running_clock_in_time_is_not_breached(api, clocks):
    """A fix: the API used to count every ticket with a recorded breach; like the console's badge
    it now asks the running clocks, and the record stays on the ticket."""
    recorded = clocks["recorded"]
    assert recorded.id not in api_ids(api, "/tickets?sla=breached&limit=100")
    shown = api.get(f"/tickets/{recorded.id}").get_json()
    assert shown["sla"]["breached"] == ["first_response"]


# LIKE wildcards -----------------------------------------------------------------------------------


def test_percent_and_underscore_match_themselves_in_every_search(api, desk):
    for n, word in enumerate(("off_50%", "offx50y")):
        ContactFactory(channel=desk.channel, username=f"deal{word}", name=f"Deal {word}")
        write(desk.channel, f"w-{n}", f"buyer-{n}", text=f"code {word} ok")
        joint = "_" if n == 0 else "x"
        canned.create(desk.brand, None, f"off{joint}50", f"Save {word}", "Hi", shared=True)
        colleague = AgentFactory(name=f"Ann{joint.upper()}B", email=f"ann{joint}b@acme.test")
        member(colleague, desk.brand)
    db.session.commit()

    for typed in ("f_5", "50%"):
        # Console search: contacts by username or name.
        found = search(desk.brand.id, typed, Role.ADMIN)
        assert [contact.username for contact, _ in found.contacts] == ["dealoff_50%"], typed
        # API conversations: last message preview.
        previews = {
            item["preview"]
            for item in api.get(f"/conversations?q={typed.replace('%', '%25')}").get_json()["items"]
        }
        assert previews == {"code off_50% ok"}, typed
        # The canned-reply picker (console) and the API's canned listing: title words.
        assert [r.title for r in canned.search(desk.brand.id, desk.agent, typed)] == [
            "Save off_50%"
        ], typed
        listed = api.get(f"/canned-replies?q={typed.replace('%', '%25')}").get_json()["items"]
        assert [r["title"] for r in listed] == ["Save off_50%"], typed

    # Shortcode prefixes and @mention completion.
    assert [r.shortcode for r in canned.search(desk.brand.id, desk.agent, "/off_")] == ["off_50"]
    listed = api.get("/canned-replies?q=/off_").get_json()["items"]
    assert [r["shortcode"] for r in listed] == ["off_50"]
    assert [c["name"] for c in notes.mention_candidates(desk.brand.id, "@ann_", desk.agent)] == [
        "Ann_B"
    ]
