import logging

from celery import shared_task

from helpdesk.delivery import service
from helpdesk.dm.models import Message
from helpdesk.extensions import db
from helpdesk.live import events as live
from helpdesk.queueing import enqueue_delivery

log = logging.getLogger(__name__)


@shared_task(bind=True, ignore_result=True, max_retries=None)
def deliver_message(self, message_id: int) -> str:
    """Only a retryable refusal is retried: the service counts attempts in the row and gives up
    after six, so a redelivered or duplicate task can never push past that."""
    outcome = service.deliver(message_id)
    if outcome != service.SKIPPED:
        _announce(message_id)
    if outcome == service.RETRY:
        raise self.retry(countdown=service.backoff_seconds(self.request.retries + 1))
    return outcome


def _announce(message_id: int) -> None:
    """The attempt committed its outcome (sent, failed, will retry): consoles show it now."""
    message = db.session.get(Message, message_id)
    if message is not None:
        live.message_updated(message)
    db.session.commit()


@shared_task(bind=True, ignore_result=True, max_retries=service.MAX_ATTEMPTS - 1)
def deliver_reaction(self, message_id: int, emoji: str | None = None) -> str:
    """React or unreact as the brand; safe to retry because Meta applies a reaction idempotently."""
    outcome = service.send_reaction(message_id, emoji)
    if outcome == service.RETRY:
        if self.request.retries >= self.max_retries:
            log.warning("reaction on message %s given up after retries", message_id)
            return service.FAILED
        raise self.retry(countdown=service.backoff_seconds(self.request.retries + 1))
    return outcome


@shared_task(ignore_result=True)
def sweep_deliveries() -> dict[str, int]:
    """Scheduled by beat: fail sends never confirmed, and enqueue queued messages no task holds
    (enqueued only after the commit, as everywhere)."""
    failed = service.sweep_stuck_deliveries()
    stalled = service.requeue_stalled()
    db.session.commit()
    enqueued = sum(enqueue_delivery(message_id) for message_id in stalled)
    if failed or stalled:
        log.info("delivery sweep: %d failed as unconfirmed, %d re-enqueued", failed, enqueued)
    return {"failed": failed, "requeued": enqueued}
