"""Live updates: the event stream (Redis) or poll (embedded default), presence heartbeats, and the
thread's newer messages rendered by the server for the page to append.

Events carry ids only; the page asks for anything it shows through the routes below, which load
it with the viewer's brand and role like every other console page.
"""

from __future__ import annotations

import json

from flask import Response, abort, current_app, jsonify, render_template, request
from flask.typing import ResponseReturnValue

from helpdesk import transaction
from helpdesk.dm import service as dm
from helpdesk.dm.models import Conversation
from helpdesk.inbox import thread
from helpdesk.live import events
from helpdesk.live import service as live
from helpdesk.types import utcnow
from helpdesk.web.console import bp
from helpdesk.web.console.context import (
    MAX_ID,
    brand,
    conversation_or_404,
    is_admin,
    me,
    parse_id,
)
from helpdesk.web.console.conversations import REACTIONS
from helpdesk.web.console.json import json_endpoint

STREAM_SECONDS = 300.0  # a stream holds a server thread: it ends, and the browser reconnects
HEARTBEAT_SECONDS = 15.0
RETRY_MS = 2000


def _conversation_arg() -> Conversation | None:
    conversation_id = parse_id(request.args.get("conversation"), "conversation")
    return conversation_or_404(conversation_id) if conversation_id is not None else None


def _audience(conversation: Conversation | None) -> live.Audience:
    return live.Audience(
        agent_id=me().id,
        admin=is_admin(),
        conversation_id=conversation.id if conversation else None,
    )


@bp.get("/live")
@json_endpoint
def live_poll() -> ResponseReturnValue:
    """The brand's events after `since` (the cursor the page was rendered with, then the one
    each answer gives), and with `conversation`, who else has it open."""
    conversation = _conversation_arg()
    since = request.args.get("since", "")
    if since and not (since.isascii() and since.isdigit() and int(since) <= MAX_ID):
        abort(400, description="since: the cursor of the previous answer")
    if since:
        cursor, found = live.poll(brand().id, int(since), _audience(conversation))
    else:
        cursor, found = live.cursor_now(brand().id), []
    body = {"cursor": str(cursor), "events": found}
    if conversation is not None:
        body["presence"] = live.viewers(conversation.id, except_agent_id=me().id)
    return jsonify(body)


@bp.get("/live/stream")
@json_endpoint
def live_stream() -> ResponseReturnValue:
    """Server-sent events from the brand's Redis channel, for a while; EventSource reconnects."""
    if not events.streaming():
        abort(404, description="No event stream without Redis: this install polls /live.")
    conversation = _conversation_arg()
    audience = _audience(conversation)
    snapshot = None
    if conversation is not None:
        snapshot = {
            "type": "presence.snapshot",
            "conversation_id": conversation.id,
            "viewers": live.viewers(conversation.id, except_agent_id=me().id),
        }
    try:
        subscription = live.subscribe(brand().id)
    except Exception:  # Redis down: the page retries later
        abort(503, description="Live updates are unavailable for a moment.")
    lifetime = float(current_app.config.get("LIVE_STREAM_SECONDS", STREAM_SECONDS))
    heartbeat = float(current_app.config.get("LIVE_HEARTBEAT_SECONDS", HEARTBEAT_SECONDS))

    def body():
        yield f"retry: {RETRY_MS}\n: connected\n\n"
        if snapshot is not None:
            yield _sse(snapshot)
        for item in subscription.events(audience, lifetime, heartbeat):
            yield ": heartbeat\n\n" if item is None else _sse(item)

    response = Response(body(), mimetype="text/event-stream")
    response.headers["Cache-Control"] = "no-cache"
    response.headers["X-Accel-Buffering"] = "no"  # nginx: pass each event on at once
    response.call_on_close(subscription.close)
    return response


def _sse(item: dict) -> str:
    return f"data: {json.dumps(item, separators=(',', ':'))}\n\n"


@bp.post("/conversations/<int:conversation_id>/presence")
@json_endpoint
def presence(conversation_id: int) -> ResponseReturnValue:
    """The page is open (`state=viewing`, every few seconds) or the agent types (`typing`)."""
    conversation = conversation_or_404(conversation_id)
    state = request.form.get("state", "viewing")
    if state not in ("viewing", "typing"):
        abort(400, description="state: viewing or typing")
    live.heartbeat(conversation, me(), typing=state == "typing")
    transaction.commit()
    return jsonify(presence=live.viewers(conversation.id, except_agent_id=me().id))


@bp.get("/conversations/<int:conversation_id>/thread/newer")
def thread_newer(conversation_id: int) -> ResponseReturnValue:
    """The messages after `after`, rendered as the page renders them; seen, since the page that
    asks for them is open on the latest messages."""
    conversation = conversation_or_404(conversation_id)
    after = request.args.get("after", default=0, type=int)
    now = utcnow()
    dm.mark_seen_by_brand(conversation, at=now)
    thread.mark_viewed(me().id, conversation.id, now)
    transaction.commit()
    items = [
        item
        for item in thread.load_thread(conversation).items
        if isinstance(item, thread.ThreadMessage)
    ]
    anchor = next((item for item in items if item.message.id == after), None)
    return render_template(
        "console/_thread_fragment.html",
        items=[item for item in items if item.message.id > after],
        after_at=anchor.at if anchor else None,
        conversation=conversation,
        reactions=REACTIONS,
    )


@bp.get("/conversations/<int:conversation_id>/thread/messages/<int:message_id>")
def thread_message(conversation_id: int, message_id: int) -> ResponseReturnValue:
    """One message as the thread shows it, after its status, text or reactions changed."""
    conversation = conversation_or_404(conversation_id)
    items = [
        item
        for item in thread.load_thread(conversation).items
        if isinstance(item, thread.ThreadMessage) and item.message.id == message_id
    ]
    if not items:
        abort(404)
    return render_template(
        "console/_thread_fragment.html",
        items=items,
        after_at=items[0].at,
        conversation=conversation,
        reactions=REACTIONS,
    )


@bp.get("/conversations/<int:conversation_id>/thread/notes/<int:note_id>")
def thread_note(conversation_id: int, note_id: int) -> ResponseReturnValue:
    """A colleague's new note, rendered as the thread renders notes."""
    conversation = conversation_or_404(conversation_id)
    item = thread.thread_note(conversation, note_id)
    return render_template(
        "console/_thread_fragment.html",
        items=[item],
        after_at=item.at,
        conversation=conversation,
        reactions=REACTIONS,
    )
