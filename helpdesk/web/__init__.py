"""Blueprints, one per area of the web interface."""

from flask import Flask

from helpdesk.extensions import csrf
from helpdesk.web.api import init_api
from helpdesk.web.api import uploads as api_uploads
from helpdesk.web.auth import bp as auth_bp
from helpdesk.web.console import bp as console_bp
from helpdesk.web.dashboard import bp as dashboard_bp
from helpdesk.web.main import bp as main_bp
from helpdesk.web.oauth import bp as oauth_bp
from helpdesk.web.settings import bp as settings_bp
from helpdesk.web.uploads import init_uploads
from helpdesk.web.webhooks import bp as webhooks_bp


def register_blueprints(app: Flask) -> None:
    app.register_blueprint(main_bp)
    app.register_blueprint(webhooks_bp)
    app.register_blueprint(auth_bp)
    app.register_blueprint(console_bp)
    app.register_blueprint(dashboard_bp)
    app.register_blueprint(settings_bp)
    app.register_blueprint(oauth_bp)
    api = init_api(app)
    init_uploads(app)
    api.register_blueprint(api_uploads.bp)
    csrf.exempt(api_uploads.bp)  # tokens, not cookies, as the other API blueprints
