import logging

from celery import shared_task

from helpdesk.extensions import db
from helpdesk.outgoing import service
from helpdesk.queueing import DELIVER_OUTGOING_WEBHOOKS, kicked

log = logging.getLogger(__name__)

BATCH = 100
MAX_ROUNDS = 10


@shared_task(ignore_result=True)
def deliver_outgoing_webhooks(limit: int = BATCH) -> int:
    """Scheduled by beat every few seconds: drains what is due, but a bounded number of rounds,
    so a backlog is shared with the next runs instead of holding one worker for ever."""
    kicked(DELIVER_OUTGOING_WEBHOOKS)
    total = 0
    for _round in range(MAX_ROUNDS):
        handled = service.deliver_due(limit=limit)
        db.session.commit()
        total += handled
        if handled < limit:
            break
    if total:
        log.info("outgoing webhooks: %d deliveries attempted", total)
    return total
