"""Alembic environment: migrations run on the engine handed in by ``mlplatform.store.sql.migrate``.

``target_metadata`` is only passed when generating a new revision; migrations themselves never import live models.
"""

from alembic import context

engine = context.config.attributes["engine"]
with engine.begin() as connection:
    context.configure(
        connection=connection,
        render_as_batch=True,
        compare_type=True,
        target_metadata=context.config.attributes.get("target_metadata"),
    )
    context.run_migrations()
