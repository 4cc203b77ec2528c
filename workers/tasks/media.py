import logging
import time

from celery import shared_task

from helpdesk.extensions import db
from helpdesk.media import copies

log = logging.getLogger(__name__)
SWEEP_BUDGET_SECONDS = 45  # beat runs the sweep every minute


@shared_task(ignore_result=True)
def copy_media(media_id: int) -> str | None:
    """Copy one inbound medium into the store (the service claims it, so a repeat is harmless)."""
    try:
        status = copies.copy(media_id)
    except Exception:
        db.session.rollback()
        raise  # the lease lapses and the sweep tries again
    return status.value if status else None


@shared_task(ignore_result=True)
def sweep_media_copies(budget_seconds: float = SWEEP_BUDGET_SECONDS) -> int:
    """Beat's safety net: copies whose time came (new ones the broker lost, retries), done here
    until the budget runs out; the rest wait for the next run."""
    deadline = time.monotonic() + budget_seconds
    done = 0
    for media_id in copies.due_ids():
        db.session.rollback()
        if time.monotonic() > deadline:
            break
        try:
            copies.copy(media_id)
        except Exception:
            db.session.rollback()
            log.exception("media %s: copy failed", media_id)
        done += 1
    db.session.rollback()
    if done:
        log.info("media sweep: %d copies tried", done)
    return done
