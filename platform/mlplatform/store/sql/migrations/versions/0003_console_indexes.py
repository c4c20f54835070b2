"""console indexes: the web console's page queries (issue 21)

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-06 05:00:00.000000

Newest-first pages per model (drift reports, alerts), runs newest first, the runs that used a dataset, and the
versions registered from a run: each would otherwise sort or scan a whole table per page view.
"""

from alembic import op

revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None

_INDEXES = (
    ('ix_drift_reports_model_created', 'drift_reports', ['model_name', 'created_at']),
    ('ix_alerts_model_created', 'alerts', ['model_name', 'created_at']),
    ('ix_runs_created_at', 'runs', ['created_at']),
    ('ix_run_datasets_dataset_id', 'run_datasets', ['dataset_id']),
    ('ix_model_versions_source_run_id', 'model_versions', ['source_run_id']),
)


def upgrade() -> None:
    for name, table, columns in _INDEXES:
        op.create_index(name, table, columns, unique=False)


def downgrade() -> None:
    for name, table, _ in reversed(_INDEXES):
        op.drop_index(name, table_name=table)
