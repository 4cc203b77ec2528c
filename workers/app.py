"""Worker entry point: `celery -A workers worker` and `celery -A workers beat`."""

from helpdesk import create_app

flask_app = create_app()
celery = flask_app.extensions["celery"]
