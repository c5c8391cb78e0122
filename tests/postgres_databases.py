"""PostgreSQL test databases shared by every test module: created from a template, dropped after the test or the run.

This lives outside conftest.py because test modules import helpers with
`from tests.conftest import ...`, which loads conftest a second time under
another module name. State kept here exists once per process.
"""

from __future__ import annotations

import asyncio
import atexit
import os
import threading
import uuid
from typing import Any

from sqlalchemy.engine import make_url

from store.db import open_database

POSTGRES_ADMIN_URL = os.environ.get("ORDER3_TEST_POSTGRES", "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres")


def postgres_url(database: str, *, driver: str = "postgresql+asyncpg") -> str:
    """Return the URL of `database` on the test server."""
    return make_url(POSTGRES_ADMIN_URL).set(drivername=driver, database=database).render_as_string(hide_password=False)


def run_postgres(url: str, statements: list[str]) -> list[tuple[Any, ...]]:
    """Run statements on a PostgreSQL database outside any transaction and return the last one's rows.

    They run on a thread of their own with asyncpg, so this works from
    synchronous tests and from inside a running event loop alike.
    """
    import asyncpg

    dsn = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    rows: list[tuple[Any, ...]] = []

    async def run() -> None:
        connection = await asyncpg.connect(dsn)
        try:
            for statement in statements:
                records = await connection.fetch(statement)
                rows[:] = [tuple(record) for record in records]
        finally:
            await connection.close()

    failure: list[BaseException] = []

    def target() -> None:
        try:
            asyncio.run(run())
        except BaseException as exc:  # noqa: BLE001  (re-raised in the calling thread)
            failure.append(exc)

    worker = threading.Thread(target=target)
    worker.start()
    worker.join()
    if failure:
        raise failure[0]
    return rows


def run_admin(statements: list[str]) -> None:
    run_postgres(POSTGRES_ADMIN_URL, statements)


class PostgresDatabases:
    """New PostgreSQL databases for one test run, dropped when the run ends.

    A test's database is copied from a template that already holds the schema at
    the head revision, which takes a fraction of the time of creating its tables.
    """

    def __init__(self) -> None:
        self.prefix = f"order3_test_{os.getpid()}_{uuid.uuid4().hex[:6]}"
        self.created: list[str] = []
        self.test_scoped: list[str] = []
        self._template: str | None = None

    def new(self, *, with_schema: bool) -> str:
        """Create a database and return its URL; with `with_schema` it has every table at the head revision."""
        name = f"{self.prefix}_{len(self.created)}"
        source = self.template() if with_schema else "template0"
        # Commits need not reach the disk for a database that lives for one test.
        run_admin([f'CREATE DATABASE "{name}" TEMPLATE "{source}"', f'ALTER DATABASE "{name}" SET synchronous_commit = off'])
        self.created.append(name)
        return postgres_url(name)

    def copy(self, url: str) -> str:
        """Create a copy of the database at `url`, which must have no open connections, and return its URL."""
        name = f"{self.prefix}_{len(self.created)}"
        source = make_url(url).database
        run_admin([f'CREATE DATABASE "{name}" TEMPLATE "{source}"', f'ALTER DATABASE "{name}" SET synchronous_commit = off'])
        self.created.append(name)
        return postgres_url(name)

    def drop(self, url: str) -> None:
        name = make_url(url).database
        run_admin([f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'])
        if name in self.created:
            self.created.remove(name)

    def template(self) -> str:
        if self._template is None:
            name = f"{self.prefix}_template"
            run_admin([f'CREATE DATABASE "{name}"'])
            self.created.append(name)

            async def build() -> None:
                database = await open_database(postgres_url(name))
                await database.dispose()

            runner = threading.Thread(target=lambda: asyncio.run(build()))
            runner.start()
            runner.join()
            self._template = name
        return self._template

    def drop_all(self) -> None:
        if self.created:
            run_admin([f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)' for name in reversed(self.created)])
            self.created.clear()


POSTGRES_DATABASES = PostgresDatabases()
atexit.register(POSTGRES_DATABASES.drop_all)
