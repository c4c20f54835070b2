"""rollouts: staged rollout state per model (issue 9)

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-02 10:00:00.000000
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None

_JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql')


def upgrade() -> None:
    op.create_table('rollouts',
    sa.Column('model_name', sa.String(length=255), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('stage', sa.String(length=32), nullable=False),
    sa.Column('stages', _JSON, nullable=False),
    sa.Column('champion_version', sa.Integer(), nullable=True),
    sa.Column('challenger_version', sa.Integer(), nullable=True),
    sa.Column('salt', sa.String(length=64), nullable=False),
    sa.Column('policy', _JSON, nullable=False),
    sa.Column('revision', sa.Integer(), nullable=False),
    sa.Column('rollbacks', sa.Integer(), nullable=False),
    sa.Column('details', _JSON, nullable=False),
    sa.Column('metrics', _JSON, nullable=False),
    sa.Column('actor', sa.String(length=255), nullable=False),
    sa.Column('stage_started_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('cooldown_until', sa.DateTime(timezone=True), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('model_name')
    )


def downgrade() -> None:
    op.drop_table('rollouts')
