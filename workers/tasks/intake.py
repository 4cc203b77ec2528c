import logging
from datetime import timedelta

from celery import shared_task

from helpdesk.extensions import db
from helpdesk.intake import service as intake

log = logging.getLogger(__name__)


@shared_task(ignore_result=True)
def process_webhook_event(event_id: int) -> None:
    try:
        contact_ids = intake.process_event(event_id)
        db.session.commit()
    except Exception as exc:
        db.session.rollback()
        intake.mark_failed(event_id, f"{type(exc).__name__}: {exc}")
        db.session.commit()
        log.exception("webhook %s failed", event_id)
        return
    for contact_id in contact_ids:
        fetch_contact_profile.delay(contact_id)


@shared_task(ignore_result=True)
def sweep_webhook_events(older_than_seconds: float = 30) -> int:
    """Deliveries left pending (broker down, worker killed) are processed here."""
    ids = intake.pending_event_ids(older_than=timedelta(seconds=older_than_seconds))
    db.session.rollback()
    for event_id in ids:
        process_webhook_event(event_id)
    if ids:
        log.info("processed %d pending webhook deliveries", len(ids))
    return len(ids)


@shared_task(ignore_result=True)
def fetch_contact_profile(contact_id: int) -> bool:
    from helpdesk.intake.profiles import fetch_profile

    fetched = fetch_profile(contact_id)
    db.session.commit()
    return fetched
