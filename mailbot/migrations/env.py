"""Alembic environment for the mailbot store.

Run by ``Store.open`` with the live connection in
``config.attributes["connection"]`` (so the upgrade happens inside the
store's own transaction and lock), or with ``sqlalchemy.url`` set for
offline SQL generation / ad-hoc use. Adapter layer: imports SQLAlchemy.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import context

from mailbot.adapters.store_schema import metadata

config = context.config


def _configure(**kwargs: object) -> None:
    context.configure(
        target_metadata=metadata,
        compare_type=True,
        **kwargs,
    )


if context.is_offline_mode():
    _configure(url=config.get_main_option("sqlalchemy.url"), literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()
else:
    connection = config.attributes.get("connection")
    if connection is not None:
        # SQLite cannot ALTER most things: batch mode rebuilds the table.
        _configure(connection=connection, render_as_batch=connection.dialect.name == "sqlite")
        with context.begin_transaction():
            context.run_migrations()
    else:
        engine = sa.create_engine(config.get_main_option("sqlalchemy.url"))
        with engine.begin() as conn:
            _configure(connection=conn, render_as_batch=conn.dialect.name == "sqlite")
            with context.begin_transaction():
                context.run_migrations()
        engine.dispose()
