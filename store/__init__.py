"""The Order3 store: tables, database sessions, inventory flows and queries.

Nothing here knows about MCP or approval policies.
"""
