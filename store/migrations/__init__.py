"""Alembic migrations for the Order3 schema; store/schema.py runs them."""
