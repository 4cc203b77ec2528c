import logging
from datetime import timedelta

from celery import shared_task
from flask import current_app

from helpdesk.dm import service
from helpdesk.extensions import db

log = logging.getLogger(__name__)


@shared_task(ignore_result=True)
def purge_vanish_messages() -> int:
    grace = timedelta(seconds=current_app.config["VANISH_PURGE_GRACE_SECONDS"])
    count = service.purge_vanish_messages(grace=grace)
    db.session.commit()
    if count:
        log.info("purged %d vanish-mode messages", count)
    return count
