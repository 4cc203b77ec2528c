"""The end of a unit of work, for views: they commit or roll back without reaching for the
session, which stays the services' and queries' business."""

from __future__ import annotations

from helpdesk.extensions import db


def commit() -> None:
    db.session.commit()


def rollback() -> None:
    db.session.rollback()
