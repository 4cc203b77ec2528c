"""Reading a newly connected account's history (helpdesk/channels/backfill.py)."""

import logging

from celery import shared_task

from helpdesk.channels import backfill
from helpdesk.extensions import db

log = logging.getLogger(__name__)


@shared_task(ignore_result=True)
def run_backfill(backfill_id: int) -> str | None:
    """Long-running by nature (2 calls a second); a second copy of the task finds it claimed."""
    return backfill.run(backfill_id)


@shared_task(ignore_result=True)
def resume_backfills() -> int:
    """Beat's sweep: a backfill whose worker died (or whose task was lost) is queued again."""
    ids = backfill.stalled_ids()
    db.session.rollback()
    for backfill_id in ids:
        run_backfill.delay(backfill_id)
    if ids:
        log.info("backfills queued again: %s", ids)
    return len(ids)
