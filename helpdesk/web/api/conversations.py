"""Conversations, their messages, replies (queued for delivery), requests and reactions."""

from __future__ import annotations

from typing import Any

from flask import Response, g
from sqlalchemy import Select, exists, func, or_, select

from helpdesk.canned import service as canned
from helpdesk.canned.models import CannedReply
from helpdesk.dm import service as dm
from helpdesk.dm.models import (
    Contact,
    Conversation,
    Message,
    MessageStatus,
    Participant,
    RequestState,
)
from helpdesk.dm.visibility import visible_states
from helpdesk.errors import NotFound
from helpdesk.extensions import db
from helpdesk.idempotency.service import Answer
from helpdesk.inbox import service as inbox
from helpdesk.queueing import enqueue_delivery, enqueue_reaction
from helpdesk.tickets.models import Tag, Ticket, TicketTag
from helpdesk.web.api import idempotency, present
from helpdesk.web.api.auth import brand_id
from helpdesk.web.api.blueprint import api_blueprint
from helpdesk.web.api.errors import InvalidField
from helpdesk.web.api.lookups import owned
from helpdesk.web.api.pagination import Order, paginate
from helpdesk.web.api.schemas import (
    ConversationQuerySchema,
    ConversationSchema,
    MessageSchema,
    PageQuerySchema,
    ReactionInSchema,
    ReplyInSchema,
    RequestActionSchema,
    page_of,
)
from helpdesk.web.api.search import contains

bp = api_blueprint("conversations", "Conversations, their messages, requests and reactions")

INBOX_STATES = (RequestState.NONE, RequestState.PENDING, RequestState.ACCEPTED)
CONVERSATIONS = Order(
    "conversations",
    Conversation.id,
    func.coalesce(Conversation.last_message_at, Conversation.created_at),
)
MESSAGES = Order(
    "messages",
    Message.id,
    func.coalesce(Message.sent_at, Message.send_at, Message.created_at),
)
REQUEST_ACTIONS = {"accept": inbox.accept, "decline": inbox.decline, "block": inbox.block}


def assigned_to(assignee: int | str) -> Any:
    """`none`: no current ticket or an unassigned one; an id: that agent's current tickets."""
    if assignee == "none":
        unassigned = select(Ticket.id).where(
            Ticket.brand_id == brand_id(), Ticket.assignee_id.is_(None)
        )
        return or_(
            Conversation.current_ticket_id.is_(None),
            Conversation.current_ticket_id.in_(unassigned),
        )
    return Conversation.current_ticket_id.in_(
        select(Ticket.id).where(Ticket.brand_id == brand_id(), Ticket.assignee_id == assignee)
    )


def conversation_query(args: dict[str, Any]) -> Select:
    query = select(Conversation).where(Conversation.brand_id == brand_id())
    states = [RequestState(args["request_state"])] if "request_state" in args else INBOX_STATES
    query = query.where(Conversation.request_state.in_(visible_states(g.api_role, states)))
    if "folder" in args:
        query = query.where(Conversation.folder == args["folder"])
    if "status" in args:
        query = query.where(Conversation.status == args["status"])
    if "assignee" in args:
        query = query.where(assigned_to(args["assignee"]))
    if "tag" in args:
        query = query.where(
            exists(
                select(TicketTag.id)
                .join(Tag, Tag.id == TicketTag.tag_id)
                .where(
                    TicketTag.ticket_id == Conversation.current_ticket_id,
                    Tag.brand_id == brand_id(),
                    Tag.name_key == args["tag"].lower(),
                )
            )
        )
    if "q" in args:
        text = args["q"]
        people = (
            select(Participant.id)
            .join(Contact, Contact.id == Participant.contact_id)
            .where(
                Participant.conversation_id == Conversation.id,
                or_(contains(Contact.username, text), contains(Contact.name, text)),
            )
        )
        query = query.where(
            or_(
                contains(Conversation.last_message_preview, text),
                contains(Conversation.title, text),
                exists(people),
            )
        )
    return query


def reply_arguments(conversation: Conversation, data: dict[str, Any]) -> dict[str, Any]:
    """The reply as inbox.reply takes it: a quoted message loaded, a canned reply rendered."""
    arguments = {
        "text": data.get("text"),
        "attachments": data.get("attachments") or [],
        "send_at": data.get("send_at"),
        "reply_to": None,
        "seen_up_to": data.get("last_seen_message_id"),
        "confirmed": data.get("confirm", False),
    }
    if data.get("reply_to") is not None:
        quoted = db.session.get(Message, data["reply_to"])
        if quoted is None or quoted.conversation_id != conversation.id or quoted.suppressed:
            raise InvalidField("reply_to", "no such message in this conversation")
        arguments["reply_to"] = quoted
    if data.get("canned_reply") is not None:
        reply = db.session.get(CannedReply, data["canned_reply"])
        if reply is None or reply.brand_id != brand_id() or reply.owner_id is not None:
            raise InvalidField("canned_reply", "no such canned reply")
        arguments["text"] = canned.render(reply, conversation, None).text
        arguments["attachments"] = arguments["attachments"] or list(reply.attachments or [])
    return arguments


@bp.route("/conversations", methods=["GET"])
@bp.arguments(ConversationQuerySchema, location="query")
@bp.response(200, page_of(ConversationSchema, "ConversationPage"))
def list_conversations(args: dict[str, Any]) -> dict[str, Any]:
    """The inbox, latest activity first (declined, blocked and hidden threads only on request)."""
    rows, cursor = paginate(conversation_query(args), CONVERSATIONS, args)
    return {"items": present.conversations(rows), "next_cursor": cursor}


@bp.route("/conversations/<id:conversation_id>", methods=["GET"])
@bp.response(200, ConversationSchema)
def get_conversation(conversation_id: int) -> dict[str, Any]:
    """A conversation with its contact(s), request state, reply window and current ticket."""
    return present.conversation(owned(Conversation, conversation_id))


@bp.route("/conversations/<id:conversation_id>/messages", methods=["GET"])
@bp.arguments(PageQuerySchema, location="query")
@bp.response(200, page_of(MessageSchema, "MessagePage"))
def list_messages(args: dict[str, Any], conversation_id: int) -> dict[str, Any]:
    """Messages newest first (a blocked contact's messages are never shown)."""
    query = select(Message).where(
        Message.conversation_id == owned(Conversation, conversation_id).id,
        Message.suppressed.is_(False),
    )
    rows, cursor = paginate(query, MESSAGES, args)
    return {"items": present.messages(rows), "next_cursor": cursor}


@bp.route("/conversations/<id:conversation_id>/messages", methods=["POST"])
@bp.arguments(ReplyInSchema)
@bp.response(202, MessageSchema)
def send_message(data: dict[str, Any], conversation_id: int) -> Response:
    """Queue (or schedule) a reply as the brand; it is handed to delivery once committed."""
    conversation = owned(Conversation, conversation_id)
    claimed = idempotency.begin()
    if isinstance(claimed, Answer):
        return idempotency.replay(claimed)
    (message,) = inbox.compose(conversation, None, **reply_arguments(conversation, data))
    answer = idempotency.answer(claimed, 202, MessageSchema, present.message(message))
    db.session.commit()
    if message.status is MessageStatus.QUEUED:
        enqueue_delivery(message.id)
    return answer


@bp.route("/conversations/<id:conversation_id>/request", methods=["POST"])
@bp.arguments(RequestActionSchema)
@bp.response(200, ConversationSchema)
def answer_request(data: dict[str, Any], conversation_id: int) -> dict[str, Any]:
    """Accept (opens a ticket), decline (out of the inbox) or block a message request."""
    conversation = owned(Conversation, conversation_id)
    REQUEST_ACTIONS[data["action"]](conversation, None)
    db.session.commit()
    return present.conversation(conversation)


@bp.route("/messages/<id:message_id>/reactions", methods=["POST"])
@bp.arguments(ReactionInSchema)
@bp.response(200, MessageSchema)
def react(data: dict[str, Any], message_id: int) -> Response:
    """React as the brand; reacting again replaces the brand's emoji."""
    message = owned(Message, message_id)
    claimed = idempotency.begin()
    if isinstance(claimed, Answer):
        return idempotency.replay(claimed)
    dm.react(message, data["emoji"])
    answer = idempotency.answer(claimed, 200, MessageSchema, present.message(message))
    db.session.commit()
    enqueue_reaction(message.id, data["emoji"])
    return answer


@bp.route("/messages/<id:message_id>/reactions", methods=["DELETE"])
@bp.response(204)
def unreact(message_id: int) -> None:
    """Take the brand's reaction back; without one, 404."""
    if not dm.unreact(owned(Message, message_id)):
        raise NotFound("the brand has not reacted to this message")
    db.session.commit()
    enqueue_reaction(message_id, None)
