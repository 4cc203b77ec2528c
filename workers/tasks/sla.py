import logging
from dataclasses import astuple

from celery import shared_task

from helpdesk.extensions import db
from helpdesk.sla import service
from helpdesk.types import utcnow

log = logging.getLogger(__name__)

BATCH = 500


@shared_task(ignore_result=True)
def sweep_sla(limit: int = BATCH) -> dict[str, int]:
    """Scheduled by beat: one commit per batch keeps locks short, and a fixed `now` makes the loop
    end, since every ticket swept moves its next check past it."""
    now = utcnow()
    total = service.SweepReport()
    while True:
        report = service.sweep_sla(now=now, limit=limit)
        db.session.commit()
        total.checked += report.checked
        total.warnings += report.warnings
        total.breaches += report.breaches
        if report.checked < limit:
            break
    if total.checked:
        log.info("SLA sweep: %d tickets checked, %d warnings, %d breaches", *astuple(total))
    return {"checked": total.checked, "warnings": total.warnings, "breaches": total.breaches}
