"""The schema built by the migrations is exactly the one the models describe."""

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from helpdesk.extensions import db


def test_migrations_and_models_agree():
    with db.engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        differences = compare_metadata(context, db.metadata)
    assert differences == []


def test_db_check_command_finds_nothing(runner):
    result = runner.invoke(args=["db", "check"])
    assert result.exit_code == 0, result.output
