"""A periodic beat written by the worker, so anyone can see that worker and beat run."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import String, select
from sqlalchemy.orm import Mapped, mapped_column

from helpdesk.extensions import Model, db
from helpdesk.types import UTCDateTime, utcnow


class Heartbeat(Model):
    __tablename__ = "heartbeats"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    beat_at: Mapped[datetime] = mapped_column(UTCDateTime)
    count: Mapped[int] = mapped_column(default=0)


def beat(name: str = "worker") -> Heartbeat:
    row = db.session.get(Heartbeat, name)
    if row is None:
        row = Heartbeat(name=name, beat_at=utcnow(), count=0)
        db.session.add(row)
    row.beat_at = utcnow()
    row.count += 1
    db.session.flush()
    return row


def last_beat(name: str = "worker") -> Heartbeat | None:
    return db.session.scalar(select(Heartbeat).where(Heartbeat.name == name))
