"""conversations: an index for the inbox's counts per folder

Revision ID: 5d2e8f4a7c13
Revises: 3c5e7a9d1b24
Create Date: 2026-12-06 00:45:00.000000

"""
from alembic import op


# revision identifiers, used by Alembic.
revision = '5d2e8f4a7c13'
down_revision = '3c5e7a9d1b24'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('conversations', schema=None) as batch_op:
        batch_op.create_index(
            'ix_conversations_counts', ['brand_id', 'status', 'request_state', 'folder'], unique=False
        )


def downgrade():
    with op.batch_alter_table('conversations', schema=None) as batch_op:
        batch_op.drop_index('ix_conversations_counts')
