"""prediction_log.status: error answers are logged with their HTTP status (issue 16, deliverable 6)

Rows written before this revision have no status; they were all answers (status 200). Monitoring reads keep the
rows whose status is NULL or below 400.

Revision ID: 0006
Revises: 0004
Create Date: 2026-12-06 14:20:00.000000
"""

import sqlalchemy as sa
from alembic import op

revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('prediction_log') as batch:
        batch.add_column(sa.Column('status', sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('prediction_log') as batch:
        batch.drop_column('status')
