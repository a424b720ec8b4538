"""Alembic migrations of the mailbot store, shipped inside the package.

``mailbot.adapters.store.Store.open(url)`` runs ``alembic upgrade head``
programmatically (no ``alembic.ini`` at run time). To write a new revision,
from the repository root::

    python -c "from alembic import command; from mailbot.adapters.store import alembic_config; \
command.revision(alembic_config('sqlite:///var/dev.db'), message='what', autogenerate=True)"

then edit the generated file so it spells out every operation (revisions must
not depend on the current schema module) and run the store tests, which check
that the migrated schema equals ``mailbot.adapters.store_schema.metadata``.
"""
