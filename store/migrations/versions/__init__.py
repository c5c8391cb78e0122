"""Alembic revisions of the Order3 schema, oldest first by their down_revision links."""
