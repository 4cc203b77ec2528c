import logging
import time
from datetime import timedelta

from celery import shared_task

from helpdesk.extensions import db
from helpdesk.intake import service as intake
from helpdesk.observability import request_id_var

log = logging.getLogger(__name__)


@shared_task(ignore_result=True)
def process_webhook_event(event_id: int) -> None:
    # Logs of this task carry the id of the request that stored the delivery.
    request_id_var.set(intake.request_id_of(event_id))
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
def process_pending_webhooks(older_than_seconds: float = 0, budget_seconds: float = 30) -> int:
    """Process stored deliveries until none is pending: the intake enqueues this (coalesced),
    and beat runs it as a sweep for anything left behind (broker down, worker killed)."""
    deadline = time.monotonic() + budget_seconds
    done: set[int] = set()
    while time.monotonic() < deadline:
        ids = [
            event_id
            for event_id in intake.pending_event_ids(
                older_than=timedelta(seconds=older_than_seconds), limit=200
            )
            if event_id not in done
        ]
        db.session.rollback()
        if not ids:
            break
        for event_id in ids:
            process_webhook_event(event_id)
            done.add(event_id)
    if done:
        log.info("processed %d webhook deliveries", len(done))
    return len(done)


@shared_task(ignore_result=True)
def sweep_webhook_events(older_than_seconds: float = 2) -> int:
    """Beat's safety net over process_pending_webhooks."""
    return process_pending_webhooks(older_than_seconds=older_than_seconds)


@shared_task(ignore_result=True)
def fetch_contact_profile(contact_id: int) -> bool:
    from helpdesk.intake.profiles import fetch_profile

    fetched = fetch_profile(contact_id)
    db.session.commit()
    return fetched
