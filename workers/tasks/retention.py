import logging

from celery import shared_task

from helpdesk.privacy.cli import describe
from helpdesk.privacy.retention import purge_expired

log = logging.getLogger(__name__)


@shared_task(ignore_result=True)
def purge_expired_content() -> int:
    """Scheduled daily by beat: each brand's content older than its retention period goes (the
    service commits in batches). Returns how many messages were purged."""
    report = purge_expired()
    for outcome in report:
        if outcome.purged.anything:
            log.info("retention: %s", describe(outcome))
    return sum(outcome.purged.messages for outcome in report)
