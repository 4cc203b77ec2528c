"""invitations and password resets: one-use links (only their hashes stored) to join a brand
and to set a new password

Revision ID: 2f07995440d5
Revises: b7e4c2a9d815
Create Date: 2026-12-06 20:41:29.272523

"""
from alembic import op
import sqlalchemy as sa

import helpdesk.types


# revision identifiers, used by Alembic.
revision = '2f07995440d5'
down_revision = 'b7e4c2a9d815'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('invitations',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('token_hash', sa.String(length=64), nullable=False),
    sa.Column('agent_id', sa.Integer(), nullable=False),
    sa.Column('brand_id', sa.Integer(), nullable=False),
    sa.Column('email', sa.String(length=254), nullable=False),
    sa.Column('role', sa.Enum('agent', 'manager', 'admin', name='role', native_enum=False), nullable=False),
    sa.Column('created_by', sa.Integer(), nullable=True),
    sa.Column('created_at', helpdesk.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('expires_at', helpdesk.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('used_at', helpdesk.types.UTCDateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['agent_id'], ['agents.id'], name=op.f('fk_invitations_agent_id_agents'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['brand_id'], ['brands.id'], name=op.f('fk_invitations_brand_id_brands'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['created_by'], ['agents.id'], name=op.f('fk_invitations_created_by_agents'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_invitations')),
    sa.UniqueConstraint('token_hash', name=op.f('uq_invitations_token_hash'))
    )
    with op.batch_alter_table('invitations', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_invitations_agent_id'), ['agent_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_invitations_brand_id'), ['brand_id'], unique=False)

    op.create_table('password_resets',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('token_hash', sa.String(length=64), nullable=False),
    sa.Column('agent_id', sa.Integer(), nullable=False),
    sa.Column('created_at', helpdesk.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('expires_at', helpdesk.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('used_at', helpdesk.types.UTCDateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['agent_id'], ['agents.id'], name=op.f('fk_password_resets_agent_id_agents'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_password_resets')),
    sa.UniqueConstraint('token_hash', name=op.f('uq_password_resets_token_hash'))
    )
    with op.batch_alter_table('password_resets', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_password_resets_agent_id'), ['agent_id'], unique=False)



def downgrade():
    with op.batch_alter_table('password_resets', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_password_resets_agent_id'))

    op.drop_table('password_resets')
    with op.batch_alter_table('invitations', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_invitations_brand_id'))
        batch_op.drop_index(batch_op.f('ix_invitations_agent_id'))

    op.drop_table('invitations')
