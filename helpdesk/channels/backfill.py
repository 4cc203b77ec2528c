"""Reading a newly connected account's recent history, in a worker.

The Backfill row is the worker's bookmark: `next_url` is the conversation page being read (with
`#done=N`, how many of its conversations are stored), so a worker that dies is followed by one
that resumes there. A worker claims the row for a lease it renews as it goes; every write checks
that the row still carries the worker's own `updated_at`, so two workers never run one backfill
(the second finds the claim taken, or, having lost it, stops at its next write).

Instagram allows about 2 calls a second per account: calls are paced (BACKFILL_CALLS_PER_SECOND),
rate-limit answers wait and retry, and a refused token marks the channel for a reconnect, after
which the backfill resumes where it stopped.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import httpx
from flask import current_app
from sqlalchemy import event, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from helpdesk import hooks
from helpdesk.channels import history, lifecycle
from helpdesk.channels.models import Backfill, Channel, ChannelKind, ChannelStatus
from helpdesk.database import rows_matched
from helpdesk.delivery.sendapi import graph_client
from helpdesk.dm import service as dm
from helpdesk.extensions import db
from helpdesk.queueing import RUN_BACKFILL, send_task
from helpdesk.types import utcnow

log = logging.getLogger(__name__)
PENDING, RUNNING, DONE, FAILED = "pending", "running", "done", "failed"
RATE_LIMIT_CODES = frozenset({4, 17, 32, 613})
TRANSIENT_CODES = frozenset({1, 2})
MISSING_CODE = 100  # a conversation or message that is gone: skipped
MESSAGE_FIELDS = "id,created_time,from,to,message,attachments"
ENQUEUE_KEY = "backfills_to_enqueue"


class TokenRefused(Exception):
    """Instagram refused the account's token: the channel needs a reconnect."""


class LostClaim(Exception):
    """Another worker holds this backfill now."""


class HistoryUnavailable(Exception):
    """Instagram kept failing or answered what cannot be read; the message is for an admin."""


class GraphRefusal(Exception):
    """One call refused (Meta's error code when it gave one)."""

    def __init__(self, code: int | None, message: str, status: int | None = None):
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status


# Starting, and the settings page's view of it ------------------------------------------------


def subscribe() -> None:
    """Called by the app factory: a first connection starts a backfill, a reconnection resumes
    one that stopped."""
    hooks.on(hooks.CHANNEL_CONNECTED, start)
    hooks.on(hooks.CHANNEL_RECONNECTED, resume)


def start(channel: Channel, **_: Any) -> Backfill | None:
    """The channel's backfill (created once), queued for a worker after the commit."""
    if channel.kind is not ChannelKind.INSTAGRAM:
        return None
    backfill = _of_channel(channel.id)
    if backfill is None:
        try:
            with dm.atomic():
                backfill = Backfill(channel_id=channel.id, status=PENDING, updated_at=utcnow())
                db.session.add(backfill)
        except IntegrityError:
            backfill = _of_channel(channel.id)
    if backfill is not None and backfill.status == PENDING:
        enqueue_after_commit(backfill.id)
    return backfill


def resume(channel: Channel, **_: Any) -> Backfill | None:
    """Reconnected: a backfill that stopped (a refused token, most often) goes on from its
    bookmark; reconnecting is also how an admin retries one that failed for another reason."""
    backfill = _of_channel(channel.id)
    if backfill is None or backfill.status != FAILED:
        return backfill
    backfill.status, backfill.error, backfill.finished_at = PENDING, None, None
    backfill.updated_at = utcnow()
    db.session.flush()
    enqueue_after_commit(backfill.id)
    return backfill


def progress(channel_id: int) -> dict | None:
    """What the channel's settings page shows: the counts, the state and a sentence."""
    backfill = _of_channel(channel_id)
    if backfill is None:
        return None
    counts = (
        f"{backfill.conversations_done} conversation{'s' * (backfill.conversations_done != 1)}, "
        f"{backfill.messages_stored} message{'s' * (backfill.messages_stored != 1)}"
    )
    summary = {
        PENDING: "Recent history will be read shortly.",
        RUNNING: f"Reading recent history: {counts} so far.",
        DONE: f"Recent history read: {counts}.",
        FAILED: f"Reading history stopped after {counts}: {backfill.error or 'unknown reason'}",
    }.get(backfill.status, backfill.status)
    return {
        "status": backfill.status,
        "conversations_done": backfill.conversations_done,
        "messages_stored": backfill.messages_stored,
        "error": backfill.error,
        "started_at": backfill.started_at,
        "updated_at": backfill.updated_at,
        "finished_at": backfill.finished_at,
        "summary": summary,
    }


def stalled_ids(now: datetime | None = None) -> list[int]:
    """Backfills no worker is on: never started, or whose worker stopped renewing its lease
    (it died). Beat's sweep queues them again."""
    cutoff = (now or utcnow()) - timedelta(seconds=_lease_seconds())
    return list(
        db.session.scalars(
            select(Backfill.id).where(
                Backfill.status.in_((PENDING, RUNNING)),
                or_(Backfill.updated_at.is_(None), Backfill.updated_at < cutoff),
            )
        )
    )


def _of_channel(channel_id: int) -> Backfill | None:
    return db.session.scalar(select(Backfill).where(Backfill.channel_id == channel_id))


def _lease_seconds() -> float:
    return float(current_app.config.get("BACKFILL_LEASE_SECONDS", 120))


# Queued after the commit, so that the worker finds the row --------------------------------------


def enqueue_after_commit(backfill_id: int) -> None:
    db.session().info.setdefault(ENQUEUE_KEY, []).append(backfill_id)


@event.listens_for(db.session, "after_commit")
def _send_queued(session: Session) -> None:
    if session.get_nested_transaction() is not None:
        return
    for backfill_id in session.info.pop(ENQUEUE_KEY, []):
        send_task(RUN_BACKFILL, [backfill_id])


@event.listens_for(db.session, "after_soft_rollback")
def _forget_queued(session: Session, previous: Any) -> None:
    if not previous.nested:
        session.info.pop(ENQUEUE_KEY, None)


# The worker's side -----------------------------------------------------------------------------


def run(backfill_id: int) -> str | None:
    """Claim the backfill and read until done; its status at the end (None: not ours)."""
    job = Job.claim(backfill_id)
    if job is None:
        return None
    try:
        job.walk()
    except LostClaim:
        db.session.rollback()
        log.info("backfill %s: another worker took it over", backfill_id)
        return None
    except TokenRefused as exc:
        db.session.rollback()
        job.fail(str(exc), needs_reconnect=True)
        return FAILED
    except HistoryUnavailable as exc:
        db.session.rollback()
        job.fail(str(exc))
        return FAILED
    except GraphRefusal as exc:
        db.session.rollback()
        job.fail(f"Instagram could not give the list of conversations: “{exc.message}”.")
        return FAILED
    except Exception as exc:  # a bug or a lost database: stop, rather than loop for ever
        db.session.rollback()
        log.exception("backfill %s failed", backfill_id)
        job.fail(f"An unexpected error stopped it ({type(exc).__name__}); reconnecting retries.")
        return FAILED
    return DONE


class Job:
    """One worker's run of one backfill."""

    def __init__(self, backfill_id: int, channel: Channel, token: str, claimed_at: datetime):
        self.backfill_id = backfill_id
        self.channel_id = channel.id
        # Plain values: touching the row between calls would hold a read transaction open.
        self.business = history.Business(channel.account_id, channel.username or "")
        self.claimed_at = claimed_at
        self.reader = GraphReader(token, self.renew)

    @classmethod
    def claim(cls, backfill_id: int) -> Job | None:
        now = utcnow()
        backfill = db.session.get(Backfill, backfill_id)
        channel = db.session.get(Channel, backfill.channel_id) if backfill else None
        if backfill is None or channel is None:
            return None
        stale = now - timedelta(seconds=_lease_seconds())
        claimed = rows_matched(
            update(Backfill)
            .where(
                Backfill.id == backfill_id,
                or_(
                    Backfill.status == PENDING,
                    (Backfill.status == RUNNING) & (Backfill.updated_at < stale),
                ),
            )
            .values(status=RUNNING, updated_at=now, started_at=backfill.started_at or now)
            .execution_options(synchronize_session=False)
        )
        token = channel.access_token
        if not claimed:
            db.session.rollback()
            return None
        db.session.commit()
        job = cls(backfill_id, channel, token or "", now)
        if channel.status is not ChannelStatus.ACTIVE or not token:
            job.fail("The account is not connected; reconnect it and the history will be read.")
            return None
        return job

    def _write(self, **values: Any) -> None:
        """Save progress and renew the lease, only while the claim is still this worker's."""
        now = utcnow()
        if not rows_matched(
            update(Backfill)
            .where(Backfill.id == self.backfill_id, Backfill.updated_at == self.claimed_at)
            .values(updated_at=now, **values)
            .execution_options(synchronize_session=False)
        ):
            raise LostClaim()
        db.session.commit()
        self.claimed_at = now

    def renew(self) -> None:
        self._write()

    def fail(self, reason: str, needs_reconnect: bool = False) -> None:
        if needs_reconnect:
            channel = db.session.get(Channel, self.channel_id)
            if channel is not None:
                lifecycle.mark_needs_reconnect(channel, reason)
        try:
            self._write(status=FAILED, error=reason[:2000], finished_at=utcnow())
        except LostClaim:
            db.session.rollback()
        log.warning("backfill %s stopped: %s", self.backfill_id, reason)

    def walk(self) -> None:
        backfill = db.session.get(Backfill, self.backfill_id)
        url: str | None = backfill.next_url or first_page_url()
        db.session.commit()
        while url:
            page_url, done = split_bookmark(url)
            page = self.reader.get(page_url)
            items = [c for c in page.get("data") or [] if isinstance(c, dict) and c.get("id")]
            for index, item in enumerate(items):
                if index < done:
                    continue
                stored = self.conversation(str(item["id"]))
                self._write(
                    next_url=f"{page_url}#done={index + 1}",
                    conversations_done=Backfill.conversations_done + 1,
                    messages_stored=Backfill.messages_stored + stored,
                )
            paging = page.get("paging") if isinstance(page.get("paging"), dict) else {}
            url = without_token(paging["next"]) if isinstance(paging.get("next"), str) else None
            if url:
                self._write(next_url=url)
        self._write(status=DONE, next_url=None, error=None, finished_at=utcnow())

    def conversation(self, conversation_id: str) -> int:
        """Read the conversation's newest messages (all the API gives) and store them."""
        try:
            answer = self.reader.get(f"{graph_base()}/{conversation_id}", {"fields": "messages"})
        except GraphRefusal as refusal:
            if refusal.code == MISSING_CODE:
                return 0
            raise
        listed = answer.get("messages") if isinstance(answer.get("messages"), dict) else {}
        ids = [m["id"] for m in listed.get("data") or [] if isinstance(m, dict) and m.get("id")]
        messages = []
        for message_id in ids:
            try:
                raw = self.reader.get(f"{graph_base()}/{message_id}", {"fields": MESSAGE_FIELDS})
            except GraphRefusal as refusal:
                if refusal.code == MISSING_CODE:
                    continue
                raise
            message = history.read_message(self.business, raw)
            if message is not None:
                messages.append(message)
        channel = db.session.get(Channel, self.channel_id)
        stored = history.store_conversation(channel, messages, utcnow())
        db.session.flush()
        return stored


# Reading the Graph API, paced ---------------------------------------------------------------------


def graph_base() -> str:
    return current_app.config["GRAPH_API_BASE"].rstrip("/")


def first_page_url() -> str:
    return f"{graph_base()}/me/conversations?platform=instagram"


def split_bookmark(url: str) -> tuple[str, int]:
    """A bookmark is a page URL, and `#done=N` when N conversations of it are stored."""
    page_url, _, fragment = url.partition("#")
    done = dict(parse_qsl(fragment)).get("done", "0")
    return page_url, int(done) if done.isdigit() else 0


def without_token(url: str) -> str:
    """Meta's `paging.next` carries the access token: the bookmark must not keep it."""
    parts = urlsplit(url)
    query = [
        (k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k != "access_token"
    ]
    return urlunsplit(parts._replace(query=urlencode(query)))


class GraphReader:
    """GETs for one account, at most BACKFILL_CALLS_PER_SECOND; rate limits and passing
    failures wait (renewing the claim meanwhile) and try again, BACKFILL_RETRIES times."""

    def __init__(self, token: str, renew: Callable[[], None]):
        config = current_app.config
        self.token = token
        self.renew = renew
        self.interval = 1.0 / max(0.01, float(config.get("BACKFILL_CALLS_PER_SECOND", 2)))
        self.retry_seconds = float(config.get("BACKFILL_RETRY_SECONDS", 30))
        self.retries = int(config.get("BACKFILL_RETRIES", 5))
        self.timeout = float(config.get("GRAPH_API_TIMEOUT", 10))
        self.last_call: float | None = None

    def get(self, url: str, params: dict[str, str] | None = None) -> dict:
        for attempt in range(self.retries + 1):
            try:
                return self._once(url, params)
            except GraphRefusal as refusal:
                if not self._passing(refusal) or attempt == self.retries:
                    raise self._in_words(refusal) from None
                self.wait(self.retry_seconds * 2**attempt)
        raise AssertionError("unreachable")

    def _once(self, url: str, params: dict[str, str] | None) -> dict:
        self._pace()
        try:
            response = graph_client().get(
                url,
                params=params,
                headers={"Authorization": f"Bearer {self.token}"},
                timeout=self.timeout,
            )
        except httpx.HTTPError as exc:
            raise GraphRefusal(
                None, f"Instagram could not be reached ({type(exc).__name__})"
            ) from None
        try:
            answer = response.json()
        except ValueError:
            answer = None
        if response.is_success and isinstance(answer, dict):
            return answer
        error = answer.get("error") if isinstance(answer, dict) else None
        error = error if isinstance(error, dict) else {}
        code = error.get("code")
        code = code if isinstance(code, int) and not isinstance(code, bool) else None
        message = str(error.get("message") or f"HTTP {response.status_code}")
        raise GraphRefusal(code, message, response.status_code)

    @staticmethod
    def _passing(refusal: GraphRefusal) -> bool:
        if refusal.code is None:
            return refusal.status is None or refusal.status >= 500
        return refusal.code in RATE_LIMIT_CODES or refusal.code in TRANSIENT_CODES

    @staticmethod
    def _in_words(refusal: GraphRefusal) -> Exception:
        code = refusal.code
        if code == 190 or code == 10 or (code is not None and 200 <= code <= 299):
            return TokenRefused(
                "Instagram refused the account's access token "
                f"(“{refusal.message}”). Reconnect the account and the history will be read."
            )
        if code == MISSING_CODE:
            return refusal
        if code in RATE_LIMIT_CODES:
            return HistoryUnavailable(
                "Instagram kept answering that too many calls were made; try again later."
            )
        return HistoryUnavailable(f"Instagram could not give the history: “{refusal.message}”.")

    def _pace(self) -> None:
        if self.last_call is not None:
            delay = self.last_call + self.interval - time.monotonic()
            if delay > 0:
                time.sleep(delay)
        self.last_call = time.monotonic()

    def wait(self, seconds: float) -> None:
        """Sleep, renewing the claim often enough that no other worker thinks this one died."""
        deadline = time.monotonic() + seconds
        step = max(0.05, _lease_seconds() / 3)
        while (left := deadline - time.monotonic()) > 0:
            time.sleep(min(step, left))
            self.renew()
