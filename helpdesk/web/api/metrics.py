"""Response metrics: the same figures as the managers' dashboard, from the workers' rollups."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from marshmallow import Schema, ValidationError, fields, validate, validates_schema

from helpdesk.accounts.models import Role
from helpdesk.brands.service import get_brand
from helpdesk.errors import ValidationError as DomainValidationError
from helpdesk.metrics.summary import FIRST_DAY, LAST_DAY, check_range, summary
from helpdesk.types import utcnow
from helpdesk.web.api.auth import brand_id, requires
from helpdesk.web.api.blueprint import api_blueprint

bp = api_blueprint("metrics", "Response metrics")
MAX_RANGE_DAYS = 366


class SummaryQuerySchema(Schema):
    from_ = fields.Date(data_key="from", load_default=None)
    to = fields.Date(load_default=None)
    business_hours = fields.Integer(load_default=0, validate=validate.OneOf([0, 1]))
    group_by = fields.String(
        load_default=None, validate=validate.OneOf(["agent", "team", "tag", "channel", "day"])
    )

    @validates_schema
    def _range(self, data: dict[str, Any], **_kwargs) -> None:
        start, end = data.get("from_"), data.get("to")
        if start and end and (end < start or (end - start).days > MAX_RANGE_DAYS):
            raise ValidationError(f"from..to is a range of at most {MAX_RANGE_DAYS} days")
        try:
            check_range(start or FIRST_DAY, end or LAST_DAY)
        except DomainValidationError as refused:
            raise ValidationError(refused.message) from None


@bp.route("/metrics/summary", methods=["GET"])
@requires(Role.MANAGER)
@bp.arguments(SummaryQuerySchema, location="query")
@bp.response(200)
def metrics_summary(args: dict[str, Any]) -> dict[str, Any]:
    """Brand-local dates, inclusive; the last 30 days when no range is given."""
    brand = get_brand(brand_id())
    today: date = utcnow().astimezone(ZoneInfo(brand.timezone)).date()
    end = args["to"] or today
    start = args["from_"] or max(end - timedelta(days=29), FIRST_DAY)
    return summary(brand, start, end, bool(args["business_hours"]), args["group_by"])
