"""Time rules: beat runs the sweep every minute (helpdesk/automations/sweep.py)."""

import logging

from celery import shared_task

from helpdesk.automations.sweep import sweep_idle

log = logging.getLogger(__name__)


@shared_task(ignore_result=True)
def sweep_time_rules() -> int:
    """Each ticket is committed on its own inside the sweep, so a killed worker loses at most
    the ticket it was on, and the next sweep does that one again (exactly once, by its run row)."""
    fired = sweep_idle()
    if fired:
        log.info("time rules fired %d times", fired)
    return fired
