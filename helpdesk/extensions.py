"""Unbound extension singletons; the app factory binds them. And `table_of`, for Core
statements on a model's table."""

from __future__ import annotations

from typing import TYPE_CHECKING, cast

from flask_login import LoginManager
from flask_migrate import Migrate
from flask_sqlalchemy import SQLAlchemy
from flask_wtf import CSRFProtect
from sqlalchemy import MetaData, Table
from sqlalchemy.orm import DeclarativeBase, registry

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    # An explicit registry: a type_annotation_map on the Base breaks Flask-SQLAlchemy 3.1.
    registry = registry(metadata=MetaData(naming_convention=NAMING_CONVENTION))


db = SQLAlchemy(model_class=Base)
# Models subclass `Model`: at run time Flask-SQLAlchemy's `db.Model`; for the type checker, which
# cannot see through the attribute, the declarative base it is made from.
if TYPE_CHECKING:
    Model = Base
else:
    Model = db.Model
migrate = Migrate(render_as_batch=True, compare_type=True)
login_manager = LoginManager()
csrf = CSRFProtect()


def table_of(model: type[Model]) -> Table:
    """A model's Table, for Core statements and COPY: every model maps one, though the declarative
    base types `__table__` only as some FromClause."""
    return cast(Table, model.__table__)
