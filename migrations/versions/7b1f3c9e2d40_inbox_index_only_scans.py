"""conversations: the counts index also carries what the inbox page sorts on

Revision ID: 7b1f3c9e2d40
Revises: 5d2e8f4a7c13
Create Date: 2026-12-06 02:00:00.000000

"""
from alembic import op


# revision identifiers, used by Alembic.
revision = '7b1f3c9e2d40'
down_revision = '5d2e8f4a7c13'
branch_labels = None
depends_on = None

COLUMNS = ['brand_id', 'status', 'request_state', 'folder']


def upgrade():
    with op.batch_alter_table('conversations', schema=None) as batch_op:
        batch_op.drop_index('ix_conversations_counts')
        batch_op.create_index(
            'ix_conversations_counts',
            COLUMNS,
            unique=False,
            postgresql_include=['current_ticket_id', 'last_message_at', 'id'],
        )


def downgrade():
    with op.batch_alter_table('conversations', schema=None) as batch_op:
        batch_op.drop_index('ix_conversations_counts')
        batch_op.create_index('ix_conversations_counts', COLUMNS, unique=False)
