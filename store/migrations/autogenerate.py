"""Write a new migration from the difference between the models and the schema at the head revision.

Usage: python -m store.migrations.autogenerate "Add token expiry"

The schema to compare against is built by running every existing migration on
a scratch SQLite database, so no database of your own is needed or changed.
Review the generated file before committing it: Alembic cannot tell a rename
from a drop and an add, and SQLite-only batch operations need a look on
PostgreSQL too (docs/migrations.md).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path
from typing import Any

from alembic import command
from sqlalchemy import create_engine

from store import schema


def next_revision_id(head: str) -> str:
    """Return the id after `head`: revisions are numbered 0001, 0002, … so their files sort in order."""
    return f"{int(head) + 1:04d}"


def generate(message: str, *, versions_dir: Path | None = None) -> Path | None:
    """Write the migration and return its path, or None if the models match the head schema."""
    head = schema.head_revision()
    written: list[Path] = []

    def keep_only_changes(context: Any, revision: Any, directives: list[Any]) -> None:
        script = directives[0]
        if script.upgrade_ops.is_empty():
            directives.clear()

    with tempfile.TemporaryDirectory() as scratch_dir:
        engine = create_engine(f"sqlite:///{Path(scratch_dir) / 'head.db'}")
        try:
            with engine.begin() as connection:
                config = schema.alembic_config()
                config.attributes["connection"] = connection
                if versions_dir is not None:
                    config.set_main_option("version_locations", f"{schema.MIGRATIONS_DIR / 'versions'} {versions_dir}")
                command.upgrade(config, "head")
                scripts = command.revision(
                    config,
                    message=message,
                    autogenerate=True,
                    rev_id=next_revision_id(head),
                    version_path=str(versions_dir) if versions_dir else None,
                    process_revision_directives=keep_only_changes,
                )
        finally:
            engine.dispose()
    for script in scripts if isinstance(scripts, list) else [scripts]:
        if script is not None:
            written.append(Path(script.path))
    return written[0] if written else None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m store.migrations.autogenerate", description=__doc__.splitlines()[0])
    parser.add_argument("message", help="What the migration does, as a short imperative sentence.")
    parser.add_argument("--versions-dir", type=Path, help="Directory to write the file to (default: store/migrations/versions).")
    arguments = parser.parse_args(argv)

    path = generate(arguments.message, versions_dir=arguments.versions_dir)
    if path is None:
        print("The models match the schema at the head revision; no migration was written.", file=sys.stderr)
        return 1
    print(f"Wrote {path}; review it, then run the migration tests (tests/test_migrations.py).")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
