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


def test_upgrading_a_populated_sqlite_database_keeps_its_rows(tmp_path):
    """Batch migrations rebuild SQLite tables; enforced foreign keys must not cascade-delete."""
    from flask_migrate import upgrade
    from sqlalchemy import text

    from helpdesk import create_app

    url = f"sqlite:///{tmp_path / 'upgrade.db'}"
    app = create_app({"SQLALCHEMY_DATABASE_URI": url})
    with app.app_context():
        upgrade(revision="d586b3d8a5bc")
        with db.engine.begin() as conn:
            conn.execute(
                text(
                    "INSERT INTO brands (id, slug, name, timezone, followers_are_known,"
                    " accept_all_requests, hidden_words, created_at)"
                    " VALUES (1, 'b', 'B', 'UTC', 0, 0, '[]', '2026-01-01 00:00:00')"
                )
            )
            conn.execute(
                text(
                    "INSERT INTO channels (id, brand_id, kind, account_id, name, needs_new_token,"
                    " created_at) VALUES (1, 1, 'instagram', '1', '', 0, '2026-01-01 00:00:00')"
                )
            )
        upgrade()
        with db.engine.connect() as conn:
            assert conn.execute(text("SELECT COUNT(*) FROM channels")).scalar_one() == 1
            assert conn.execute(text("PRAGMA foreign_keys")).scalar_one() == 1
        db.engine.dispose()
