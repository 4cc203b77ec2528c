import logging

from celery import shared_task

from helpdesk.assignment import service
from helpdesk.extensions import db

log = logging.getLogger(__name__)


@shared_task(ignore_result=True)
def assign_waiting_tickets(brand_id: int | None = None) -> int:
    """Scheduled by beat, and enqueued when an agent comes online or frees capacity."""
    count = service.assign_waiting(brand_id)
    db.session.commit()
    if count:
        log.info("auto-assigned %d waiting tickets", count)
    return count
