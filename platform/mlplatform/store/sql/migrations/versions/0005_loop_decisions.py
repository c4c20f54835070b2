"""loop_decisions: every decision of the automatic loop with its evidence (issue 18, SPEC S8.4)

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-06 14:30:00.000000
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None

_JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql')


def upgrade() -> None:
    op.create_table('loop_decisions',
    sa.Column('id', sa.String(length=36), nullable=False),
    sa.Column('model_name', sa.String(length=255), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('trigger', sa.String(length=32), nullable=True),
    sa.Column('action', sa.String(length=16), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('reason', sa.Text(), nullable=True),
    sa.Column('champion_version', sa.Integer(), nullable=True),
    sa.Column('challenger_version', sa.Integer(), nullable=True),
    sa.Column('job_id', sa.String(length=255), nullable=True),
    sa.Column('evidence', _JSON, nullable=False),
    sa.Column('details', _JSON, nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_index('ix_loop_decisions_model_name', 'loop_decisions', ['model_name'], unique=False)


def downgrade() -> None:
    op.drop_index('ix_loop_decisions_model_name', table_name='loop_decisions')
    op.drop_table('loop_decisions')
