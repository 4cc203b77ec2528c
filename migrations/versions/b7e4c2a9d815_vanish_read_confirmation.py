"""conversations: when an agent confirmed reading the vanish-mode messages, so that content is
kept until it was answered or confirmed

Revision ID: b7e4c2a9d815
Revises: 75f450c7ec38
Create Date: 2026-12-06 19:00:00.000000

"""
from alembic import op
import sqlalchemy as sa

import helpdesk.types


# revision identifiers, used by Alembic.
revision = 'b7e4c2a9d815'
down_revision = '75f450c7ec38'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('conversations', schema=None) as batch_op:
        batch_op.add_column(
            sa.Column('vanish_read_at', helpdesk.types.UTCDateTime(timezone=True), nullable=True)
        )


def downgrade():
    with op.batch_alter_table('conversations', schema=None) as batch_op:
        batch_op.drop_column('vanish_read_at')
