"""The flask-smorest pieces every API blueprint shares: a JSON-only body parser, the checks that
run before a view (token, role, path ids) and the error handlers that keep the error shape."""

from __future__ import annotations

import json
from typing import Any

import flask_smorest
from flask import Request
from sqlalchemy.exc import DataError, IntegrityError
from webargs import core
from webargs.flaskparser import FlaskParser, abort, is_json_request
from werkzeug.exceptions import HTTPException, default_exceptions
from werkzeug.routing import IntegerConverter

from helpdesk.errors import DomainError
from helpdesk.web.api.auth import authenticate_request
from helpdesk.web.api.errors import (
    handle_data_error,
    handle_domain_error,
    handle_http_exception,
    handle_integrity_error,
)
from helpdesk.web.api.lookups import check_path_ids
from helpdesk.web.api.schemas import MAX_ID

PREFIX = "/api/v1"


class IdConverter(IntegerConverter):
    """`<id:name>`: a positive id that fits the INTEGER columns, so a huge one is a plain 404."""

    def __init__(self, map: Any, *args: Any, **kwargs: Any):
        super().__init__(map, min=1, max=MAX_ID)


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


class JsonParser(FlaskParser):
    """Strict JSON bodies: a body that is not JSON (wrong type, NaN, nested past what a parser
    can follow) is a 400 `bad_json`, rather than read as empty or failing as a 500."""

    def _raw_load_json(self, req: Request) -> Any:
        raw = req.get_data(cache=True)
        if not raw:
            return core.missing
        if not is_json_request(req):
            abort(400, bad_json=True, message="send JSON, with Content-Type: application/json")
        try:
            return json.loads(raw.decode("utf-8"), parse_constant=_refuse_constant)
        except UnicodeDecodeError as exc:
            abort(400, bad_json=True, message=f"the body is not UTF-8: {exc.reason}")
        except RecursionError:
            abort(400, bad_json=True, message="the body is nested too deeply")
        except ValueError as exc:  # JSONDecodeError is a ValueError
            abort(400, bad_json=True, message=f"the body is not valid JSON: {exc}")


class Blueprint(flask_smorest.Blueprint):
    ARGUMENTS_PARSER = JsonParser()


def api_blueprint(name: str, description: str) -> Blueprint:
    """A blueprint under /api/v1 whose every view is behind the token, role and brand checks."""
    bp = Blueprint(f"api_{name}", __name__, url_prefix=PREFIX, description=description)
    bp.before_request(authenticate_request)
    bp.before_request(check_path_ids)
    bp.register_error_handler(DomainError, handle_domain_error)
    bp.register_error_handler(IntegrityError, handle_integrity_error)
    bp.register_error_handler(DataError, handle_data_error)
    # By status code as well: the app's own handlers for a code would otherwise come first.
    bp.register_error_handler(HTTPException, handle_http_exception)
    for status in default_exceptions:
        bp.register_error_handler(status, handle_http_exception)
    return bp
