"""Meta's deauthorize and data-deletion callbacks, and the public status page of a deletion.

Meta posts these from its servers, not from a browser: they carry no session and no CSRF token
(their paths are exempt, helpdesk/web/auth), and prove their origin with `signed_request`. An
unknown Instagram user is answered 200 all the same: Meta would retry a refusal for days.
"""

from __future__ import annotations

from flask import abort, current_app, jsonify, render_template, request, url_for
from flask.typing import ResponseReturnValue

from helpdesk import transaction
from helpdesk.accounts.links import public_url
from helpdesk.channels import signed_request
from helpdesk.privacy import deletion
from helpdesk.web.oauth import bp


def _signed_user_id() -> str:
    """The Instagram user the callback is about, or a 400 with the reason as JSON."""
    try:
        payload = signed_request.parse(
            request.form.get("signed_request"), current_app.config.get("INSTAGRAM_APP_SECRET", "")
        )
    except signed_request.BadSignedRequest as exc:
        abort(_refused(str(exc)))
    return payload["user_id"]


def _refused(message: str):
    response = jsonify(error={"code": "bad_signed_request", "message": message})
    response.status_code = 400
    return response


@bp.post("/oauth/instagram/deauthorize")
def deauthorize() -> ResponseReturnValue:
    user_id = _signed_user_id()
    disconnected = deletion.deauthorize(user_id)
    transaction.commit()
    return jsonify(success=True, channels_disconnected=disconnected)


@bp.post("/oauth/instagram/data-deletion")
def data_deletion() -> ResponseReturnValue:
    user_id = _signed_user_id()
    deletion_request = deletion.request_deletion(user_id)
    transaction.commit()
    code = deletion_request.confirmation_code
    return jsonify(url=public_url("oauth.data_deletion_status", code=code), confirmation_code=code)


@bp.get("/data-deletion/<code>")
def data_deletion_status(code: str) -> ResponseReturnValue:
    found = deletion.find(code)
    if found is None:
        if _wants_json():
            return jsonify(error={"code": "not_found", "message": "No such request."}), 404
        abort(404)
    status = deletion.status_of(found)
    if _wants_json():
        return jsonify(status.as_json())
    return render_template(
        "oauth/data_deletion.html",
        status=status,
        json_url=url_for("oauth.data_deletion_status", code=code, format="json"),
    )


def _wants_json() -> bool:
    if request.args.get("format") == "json":
        return True
    best = request.accept_mimetypes.best_match(["text/html", "application/json"])
    return (
        best == "application/json"
        and request.accept_mimetypes[best] > request.accept_mimetypes["text/html"]
    )
