import logging

from celery import shared_task

from helpdesk.csat import survey
from helpdesk.extensions import db
from helpdesk.queueing import enqueue_delivery
from helpdesk.types import utcnow

log = logging.getLogger(__name__)


@shared_task(ignore_result=True)
def send_due_surveys(limit: int = survey.BATCH) -> dict[str, int]:
    """Scheduled by beat: batches of due surveys, each committed before its messages are handed
    to delivery; a fixed `now` ends the loop, since a swept ticket is no longer due."""
    now = utcnow()
    sent = not_sent = 0
    while True:
        report = survey.send_due(now=now, limit=limit)
        db.session.commit()
        for message_id in report.message_ids:
            enqueue_delivery(message_id)
        sent += len(report.message_ids)
        not_sent += report.not_sent
        if report.checked < limit:
            break
    if sent or not_sent:
        log.info("CSAT surveys: %d sent, %d not sent", sent, not_sent)
    return {"sent": sent, "not_sent": not_sent}
