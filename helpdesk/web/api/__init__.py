"""REST API v1 under /api/v1 (contract: docs/rest-api.md), built with flask-smorest.

- Auth: `Authorization: Bearer <token>`; a token acts for one brand with a role, and the views
  pass it to the services as an `Actor`, whose role rules they check (`Actor.require`). A view
  marked with `auth.requires` is refused through the same check before any lookup.
- Brand isolation: every id in a path is loaded through `lookups.owned`, so another brand's id is
  a 404; ids inside a body (reply_to, conversation_id, channel_id ...) that are not the brand's
  are a 422 naming the field.
- Errors: `{"error": {"code", "message", "fields"?}}`, JSON for every path under /api/, also for
  unknown paths (404) and wrong methods (405).
- Lists: keyset pagination, `?limit=` 1..100 (25) and an opaque `cursor`, answering
  `{"items": [...], "next_cursor": ... | null}`.
- The OpenAPI document is generated from the routes and schemas, at /api/v1/openapi.json.

Rules a token meets, because a token is no agent:
- Roles: every route needs an agent token, except SLA policies (all of them), PUT
  /business-hours, writing canned replies and PATCH /agents (manager), and POST /agents, changing
  an agent's role and webhook subscriptions (admin).
- `assignee=me` names the signed-in agent and is refused (422); filter by `none` or an agent id.
- PATCH /tickets/{id} with an `assignee_id` assigns an unassigned ticket (as a take: if someone
  took it meanwhile, 409 `already_assigned`); a ticket that has a different assignee is also 409
  `already_assigned`: unassign it (`assignee_id: null`) first, so an integration never silently
  takes a ticket from a person.
- Canned replies: the token sees the brand's shared replies; agents' personal ones stay theirs.
- A reply is committed as queued, then handed to the delivery workers (helpdesk.queueing);
  reactions likewise. Replies count as human replies for first-response metrics.
"""

from __future__ import annotations

from flask import Flask
from flask_smorest import Api

from helpdesk import extensions
from helpdesk.web.api import (
    agents,
    audit,
    automations,
    brand,
    canned,
    channels,
    contacts,
    conversations,
    inbound,
    metrics,
    settings,
    tags,
    teams,
    tickets,
    tokens,
    webhooks,
)
from helpdesk.web.api.blueprint import PREFIX, IdConverter
from helpdesk.web.api.errors import answer_api_routing_errors
from helpdesk.web.api.schemas import ErrorSchema


class RestApi(Api):
    """flask-smorest's Api, minus its app-wide error handler: the console keeps its own pages."""

    ERROR_SCHEMA = ErrorSchema

    def _register_error_handlers(self) -> None:
        pass


def init_api(app: Flask) -> RestApi:
    app.config.setdefault("API_TITLE", "DM helpdesk API")
    app.config.setdefault("API_VERSION", "v1")
    app.config.setdefault("OPENAPI_VERSION", "3.0.3")
    app.config.setdefault("OPENAPI_URL_PREFIX", PREFIX)
    app.config.setdefault("OPENAPI_JSON_PATH", "openapi.json")
    app.url_map.converters["id"] = IdConverter
    api = RestApi(app)
    api.spec.components.security_scheme("bearer", {"type": "http", "scheme": "bearer"})
    api.spec.options["security"] = [{"bearer": []}]
    # Exempting on the extension object works whether or not it is bound to the app yet.
    csrf = getattr(extensions, "csrf", None) or app.extensions.get("csrf")
    modules = (conversations, inbound, tickets, canned, settings, agents, teams, tags, brand)
    for module in (*modules, tokens, webhooks, audit, channels, metrics, contacts, automations):
        api.register_blueprint(module.bp)
        if csrf is not None:  # tokens, not cookies: there is no session to forge
            csrf.exempt(module.bp)
    app.before_request(answer_api_routing_errors)
    return api
