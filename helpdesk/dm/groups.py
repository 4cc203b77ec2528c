"""Group threads: at most GROUP_LIMIT participants, the brand included."""

from __future__ import annotations

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError

from helpdesk.brands.models import Brand
from helpdesk.channels.models import Channel
from helpdesk.dm.conversations import _insert_participant, _is_participant, atomic
from helpdesk.dm.models import (
    GROUP_LIMIT,
    Contact,
    Conversation,
    ConversationKind,
    Folder,
    Participant,
    RequestState,
)
from helpdesk.errors import AlreadyExists, GroupFull, NotAGroup, NotFound, ValidationError
from helpdesk.extensions import db


def create_group(
    channel: Channel, thread_key: str, contacts: list[Contact], title: str | None = None
) -> Conversation:
    if len(contacts) + 1 > GROUP_LIMIT:
        raise GroupFull(f"a group has at most {GROUP_LIMIT} participants, the brand included")
    brand = db.session.get(Brand, channel.brand_id)
    key = f"group:{thread_key}"
    if db.session.scalar(
        select(Conversation.id).where(
            Conversation.channel_id == channel.id, Conversation.thread_key == key
        )
    ):
        raise AlreadyExists("this group thread exists")
    conversation = Conversation(
        brand_id=brand.id,
        channel_id=channel.id,
        kind=ConversationKind.GROUP,
        thread_key=key,
        title=title,
        folder=Folder.PRIMARY,
        request_state=RequestState.NONE,
        participant_count=1,
    )
    db.session.add(conversation)
    db.session.flush()
    db.session.add(Participant(conversation_id=conversation.id, is_brand=True))
    for contact in contacts:
        _insert_participant(conversation, contact)
    return conversation


def add_participant(conversation: Conversation, contact: Contact) -> Participant:
    """The 33rd participant is refused with GroupFull and nothing is written."""
    if conversation.kind is not ConversationKind.GROUP:
        raise NotAGroup()
    if contact.channel_id != conversation.channel_id:
        raise ValidationError("the contact belongs to another channel")
    if _is_participant(conversation, contact):
        raise AlreadyExists("already a participant")
    try:
        with atomic():
            return _insert_participant(conversation, contact)
    except IntegrityError as exc:
        raise AlreadyExists("already a participant") from exc


def remove_participant(conversation: Conversation, contact: Contact) -> None:
    if conversation.kind is not ConversationKind.GROUP:
        raise NotAGroup()
    participant = db.session.scalar(
        select(Participant).where(
            Participant.conversation_id == conversation.id, Participant.contact_id == contact.id
        )
    )
    if participant is None:
        raise NotFound("not a participant")
    db.session.delete(participant)
    db.session.execute(
        update(Conversation)
        .where(Conversation.id == conversation.id)
        .values(participant_count=Conversation.participant_count - 1)
        .execution_options(synchronize_session=False)
    )
    db.session.flush()
    db.session.refresh(conversation, ["participant_count"])
