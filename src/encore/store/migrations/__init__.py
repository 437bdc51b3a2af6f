"""Alembic migrations of encore's database, run programmatically by ``encore.store.db``."""
