"""Conversations, their messages, replies (queued for delivery), requests and reactions."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flask import Response, g
from sqlalchemy import Select, func

from helpdesk import lookups, transaction
from helpdesk.accounts.actor import Actor
from helpdesk.canned import service as canned
from helpdesk.canned.models import CannedReply
from helpdesk.dm import service as dm
from helpdesk.dm.models import Conversation, Message, MessageStatus
from helpdesk.errors import NotFound
from helpdesk.idempotency.service import Answer
from helpdesk.inbox import queries
from helpdesk.inbox import service as inbox
from helpdesk.queueing import enqueue_delivery, enqueue_reaction
from helpdesk.web.api import idempotency, present
from helpdesk.web.api.auth import brand_id
from helpdesk.web.api.blueprint import api_blueprint
from helpdesk.web.api.errors import InvalidField
from helpdesk.web.api.inputs import (
    ConversationQuerySchema,
    ReactionInSchema,
    ReplyInSchema,
    RequestActionSchema,
)
from helpdesk.web.api.lookups import owned
from helpdesk.web.api.pagination import Order, paginate
from helpdesk.web.api.schemas import ConversationSchema, MessageSchema, PageQuerySchema, page_of

bp = api_blueprint("conversations", "Conversations, their messages, requests and reactions")

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
REQUEST_ACTIONS: dict[str, Callable[[Conversation, Actor | None], object]] = {
    "accept": inbox.accept,
    "decline": inbox.decline,
    "block": inbox.block,
}


def conversation_query(args: dict[str, Any]) -> Select:
    """The listing's filters, as the console's inbox defines them (`inbox.queries`)."""
    return queries.conversation_listing(
        brand_id(),
        g.api_role,
        request_state=args.get("request_state"),
        folder=args.get("folder"),
        status=args.get("status"),
        assignee=args.get("assignee"),
        tag=args.get("tag"),
        text=args.get("q"),
    )


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
        quoted = queries.quotable_message(conversation, data["reply_to"])
        if quoted is None:
            raise InvalidField("reply_to", "no such message in this conversation")
        arguments["reply_to"] = quoted
    if data.get("canned_reply") is not None:
        try:
            reply = lookups.owned(CannedReply, data["canned_reply"], brand_id(), g.api_role)
        except NotFound:
            raise InvalidField("canned_reply", "no such canned reply") from None
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
    query = queries.visible_messages(owned(Conversation, conversation_id))
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
    transaction.commit()
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
    transaction.commit()
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
    transaction.commit()
    enqueue_reaction(message.id, data["emoji"])
    return answer


@bp.route("/messages/<id:message_id>/reactions", methods=["DELETE"])
@bp.response(204)
def unreact(message_id: int) -> None:
    """Take the brand's reaction back; without one, 404."""
    if not dm.unreact(owned(Message, message_id)):
        raise NotFound("the brand has not reacted to this message")
    transaction.commit()
    enqueue_reaction(message_id, None)
