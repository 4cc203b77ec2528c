import logging

from celery import shared_task

from helpdesk import heartbeat as heartbeat_service
from helpdesk.extensions import db

log = logging.getLogger(__name__)


@shared_task(ignore_result=True)
def heartbeat() -> int:
    """Scheduled by beat: a visible sign that worker and beat are alive."""
    row = heartbeat_service.beat("worker")
    db.session.commit()
    log.info("heartbeat %d at %s", row.count, row.beat_at.isoformat())
    return row.count
