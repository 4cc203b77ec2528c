import logging
from dataclasses import astuple

from celery import shared_task

from helpdesk.extensions import db
from helpdesk.metrics import service

log = logging.getLogger(__name__)

MAX_ROUNDS = 20


@shared_task(ignore_result=True)
def record_ticket_metrics(ticket_id: int) -> int:
    """Enqueued after the commit of a reply or a status change: the ticket's metric events and
    the rollups of their days, at once rather than at the next sweep."""
    days = service.refresh_ticket_metrics(ticket_id)
    db.session.commit()
    return len(days)


@shared_task(ignore_result=True)
def sweep_metrics(limit: int = service.SWEEP_BATCH) -> dict[str, int]:
    """Scheduled by beat: whatever changed without an enqueue (webhook echoes, tags, breaches,
    a lost task) and the volume of new messages. One commit per step keeps locks short; a
    backlog is left to the next run after MAX_ROUNDS steps."""
    total = service.SweepReport()
    for _round in range(MAX_ROUNDS):
        report = service.sweep_metrics(limit=limit)
        db.session.commit()
        total.tickets += report.tickets
        total.rollup_days += report.rollup_days
        total.volume_days += report.volume_days
        if report.skipped or not report.more:
            break
    if total.tickets or total.volume_days:
        log.info("metrics sweep: %d tickets, %d rollup days, %d volume days", *astuple(total)[:3])
    return {
        "tickets": total.tickets,
        "rollup_days": total.rollup_days,
        "volume_days": total.volume_days,
    }
