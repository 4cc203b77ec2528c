import logging

from celery import shared_task

from helpdesk.extensions import db
from helpdesk.inbox import service as inbox
from helpdesk.queueing import enqueue_delivery
from helpdesk.tickets import service as tickets

log = logging.getLogger(__name__)


@shared_task(ignore_result=True)
def wake_snoozed_tickets() -> int:
    count = tickets.wake_snoozed()
    db.session.commit()
    if count:
        log.info("woke %d snoozed tickets", count)
    return count


@shared_task(ignore_result=True)
def release_scheduled_messages() -> int:
    """Due scheduled messages become queued; delivery picks them up from there."""
    released = inbox.release_scheduled()
    db.session.commit()
    for message_id in released:
        enqueue_delivery(message_id)
    if released:
        log.info("released %d scheduled messages", len(released))
    return len(released)
