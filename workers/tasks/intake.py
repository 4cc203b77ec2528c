import logging
import time
from datetime import timedelta

from celery import shared_task
from flask import current_app

from helpdesk.extensions import db
from helpdesk.intake import batch
from helpdesk.intake import service as intake
from helpdesk.intake.profiles import fetch_profile
from helpdesk.observability import request_id_var
from helpdesk.queueing import PROCESS_PENDING_WEBHOOKS, kicked, runner_slot

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
    queue_profile_fetches(contact_ids)


@shared_task(ignore_result=True)
def process_pending_webhooks(older_than_seconds: float = 0, budget_seconds: float = 30) -> int:
    """Process stored deliveries until none is pending: the intake asks for this (`kick`), and
    beat runs it as a sweep for anything left behind (broker down, worker killed).

    At most INTAKE_LOOPS loops run at once (rows are claimed, so they share the work), leaving
    the other worker processes free for replies and the rest; a loop that finds nothing left
    lets go, then looks once more, since a delivery stored just before it let go had its
    request turned away by the hold.
    """
    kicked(PROCESS_PENDING_WEBHOOKS)
    deadline = time.monotonic() + budget_seconds
    done: set[int] = set()
    failed: set[int] = set()  # still pending, for the sweep to retry later: not again in this run
    profiles: set[int] = set()  # contacts whose profile this run has asked for
    loops = current_app.config["INTAKE_LOOPS"]
    while time.monotonic() < deadline:
        with runner_slot(PROCESS_PENDING_WEBHOOKS, budget_seconds + 30, loops) as mine:
            if not mine:
                break
            _drain(older_than_seconds, deadline, done, failed, profiles)
        if not [event_id for event_id in _pending(older_than_seconds) if event_id not in failed]:
            break
    else:  # the budget is spent with work left: this loop goes on in a new run at once (after
        # the tasks queued meanwhile), not at the next sweep
        if _pending(older_than_seconds):
            process_pending_webhooks.delay(older_than_seconds, budget_seconds)
    if done:
        log.info("processed %d webhook deliveries", len(done))
    return len(done)


BUSY_PAUSE = 0.05


def _drain(
    older_than_seconds: float,
    deadline: float,
    done: set[int],
    failed: set[int],
    profiles: set[int],
) -> None:
    """Batch after batch until nothing is pending (or the budget is spent). Only the deliveries
    that failed are skipped by later claims: the processed ones are no longer pending, and
    naming every one of them in each claim (`id NOT IN (...)`, thousands of ids into a run) came
    to cost more than the claim itself.

    A newcomer's profile is asked for once per run: while the fetch waits in the queue, each of
    their next messages would otherwise ask again (one message to the broker each)."""
    older_than = timedelta(seconds=older_than_seconds)
    while time.monotonic() < deadline:
        outcome = batch.process_batch(older_than=older_than, skip=failed)
        if outcome is None:
            return
        done.update(outcome.delivery_ids, outcome.failed_ids)
        failed.update(outcome.failed_ids)
        if not outcome.delivery_ids and not outcome.failed_ids:
            time.sleep(BUSY_PAUSE)  # every claimed customer was another worker's: let it commit
        wanted = [c for c in outcome.contacts_needing_profile if c not in profiles]
        profiles.update(wanted)
        queue_profile_fetches(wanted)


def _pending(older_than_seconds: float) -> list[int]:
    ids = intake.pending_event_ids(older_than=timedelta(seconds=older_than_seconds), limit=200)
    db.session.rollback()
    return ids


@shared_task(ignore_result=True)
def sweep_webhook_events(older_than_seconds: float = 2) -> int:
    """Beat's safety net over process_pending_webhooks."""
    return process_pending_webhooks(older_than_seconds=older_than_seconds)


# Contacts per profile task: a batch's newcomers go to the broker in a few messages, and a few
# worker processes can still share the fetches (each one a call to the Graph API).
PROFILES_PER_TASK = 25


def queue_profile_fetches(contact_ids: list[int]) -> None:
    for start in range(0, len(contact_ids), PROFILES_PER_TASK):
        fetch_contact_profiles.delay(contact_ids[start : start + PROFILES_PER_TASK])


@shared_task(ignore_result=True)
def fetch_contact_profile(contact_id: int) -> bool:
    """One contact: what versions before `fetch_contact_profiles` queued."""
    return fetch_contact_profiles([contact_id]) == 1


@shared_task(ignore_result=True)
def fetch_contact_profiles(contact_ids: list[int]) -> int:
    """Several contacts' profiles, each committed alone: one that fails leaves the others
    fetched. Returns how many were fetched."""
    fetched = 0
    for contact_id in contact_ids:
        try:
            fetched += fetch_profile(contact_id)
            db.session.commit()
        except Exception:
            db.session.rollback()
            log.exception("profile of contact %s not fetched", contact_id)
    return fetched
