"""Domain errors: raised by services, mapped once to HTTP codes and flash messages."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager


class DomainError(Exception):
    code = "domain_error"
    status = 400

    def __init__(self, message: str | None = None):
        super().__init__(message or self.__doc__ or self.code)
        self.message = message or (self.__doc__ or self.code).strip()


class ValidationError(DomainError):
    """The input is not valid."""

    code = "invalid"
    status = 422


class InvalidField(ValidationError):
    """A value that passed the schema but not the lookup it names (a cursor, a referenced id)."""

    def __init__(self, field: str, message: str):
        super().__init__(f"{field}: {message}")
        self.fields = {field: [message]}


@contextmanager
def about_field(field: str) -> Iterator[None]:
    """Name the field a refusal is about, so a form shows the message next to it."""
    try:
        yield
    except InvalidField:
        raise
    except ValidationError as refused:
        raise InvalidField(field, refused.message) from None


class NotFound(DomainError):
    """No such thing."""

    code = "not_found"
    status = 404


class Forbidden(DomainError):
    """Your role does not allow this."""

    code = "forbidden"
    status = 403


class AlreadyExists(DomainError):
    """It already exists."""

    code = "already_exists"
    status = 409


class DuplicateMessage(DomainError):
    """A message with this platform id is already stored for this channel."""

    code = "duplicate_message"
    status = 409

    def __init__(self, message: str | None = None, existing_id: int | None = None):
        super().__init__(message)
        self.existing_id = existing_id


class ReplyWindowClosed(DomainError):
    """The reply window is closed: the customer's last message is too old to answer."""

    code = "reply_window_closed"
    status = 409


class GroupFull(DomainError):
    """A group conversation has at most 32 participants."""

    code = "group_full"
    status = 409


class NotAGroup(DomainError):
    """Only a group conversation has participants to add or remove."""

    code = "not_a_group"
    status = 409


class InvalidState(DomainError):
    """This action does not apply in the current state."""

    code = "invalid_state"
    status = 409


class ContactBlocked(DomainError):
    """The contact is blocked."""

    code = "contact_blocked"
    status = 409


class AlreadyAssigned(DomainError):
    """Someone else has just taken this ticket."""

    code = "already_assigned"
    status = 409


class NewerReply(DomainError):
    """Someone else replied after the sender last saw the conversation."""

    code = "newer_reply"
    status = 409

    def __init__(self, message: str | None = None, newest_id: int | None = None):
        super().__init__(message)
        self.newest_id = newest_id


class StaleTicket(InvalidState):
    """The ticket changed since the page that asked for this change was loaded."""

    code = "stale_ticket"


class LinkGone(DomainError):
    """This link has already been used or has expired."""

    code = "link_gone"
    status = 410
