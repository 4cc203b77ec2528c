"""agents: a session epoch, bumped at sign-out so that copies of old cookies stop working

Revision ID: 3c5e7a9d1b24
Revises: fbc601ebb007
Create Date: 2026-11-22 06:10:00.000000

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '3c5e7a9d1b24'
down_revision = 'fbc601ebb007'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('agents', schema=None) as batch_op:
        batch_op.add_column(
            sa.Column('session_epoch', sa.Integer(), nullable=False, server_default='0')
        )


def downgrade():
    with op.batch_alter_table('agents', schema=None) as batch_op:
        batch_op.drop_column('session_epoch')
