import logging

from celery import shared_task

from helpdesk.channels import tokens_refresh

log = logging.getLogger(__name__)


@shared_task(ignore_result=True)
def refresh_instagram_tokens() -> dict[str, int]:
    """Scheduled daily by beat: refresh the Instagram tokens that are due (the service commits)."""
    outcomes = tokens_refresh.refresh_due()
    counts: dict[str, int] = {}
    for outcome in outcomes:
        counts[outcome.result] = counts.get(outcome.result, 0) + 1
    if outcomes:
        log.info("instagram tokens: %s", counts)
    return counts
