"""The loaded workflows: every stored version an enrollment may be pinned to, and the
version each workflow enrolls new contacts in."""

from __future__ import annotations

import json

import asyncpg
import structlog

from .store import Q
from .workflow.definition import Definition, DefinitionError, load_text

log = structlog.get_logger("engine")


class Registry:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool
        self._definitions: dict[tuple[str, int], Definition] = {}
        #: The definition each workflow enrolls new contacts in (highest loaded version).
        self.active: dict[str, Definition] = {}
        #: Workflows switched off (workflow_switches): they enroll nobody new; running
        #: enrollments finish on their pinned version. Kept by workflow_admin.py.
        self.disabled: set[str] = set()

    async def register(self, definitions: list[Definition]) -> None:
        for definition in definitions:
            await self.pool.execute(
                Q.upsert_definition,
                definition.key,
                definition.version,
                definition.name,
                definition.workflow.trigger.type,
                definition.to_builtins(),
                definition.source,
            )
            self._definitions[(definition.key, definition.version)] = definition
            current = self.active.get(definition.key)
            if current is None or current.version < definition.version:
                self.active[definition.key] = definition
            log.info("workflow_loaded", workflow=definition.key, version=definition.version)

    async def activate_stored(self) -> None:
        """Enroll in every stored workflow too, not only the files loaded at start.

        workflow_definitions is the source of truth: a workflow imported through
        the API stays active across restarts and on every replica.
        """
        for row in await self.pool.fetch(Q.list_definitions):
            current = self.active.get(row["workflow_key"])
            if current is not None and current.version >= row["version"]:
                continue
            try:
                definition = await self.definition(row["workflow_key"], row["version"])
            except LookupError as err:
                log.error("stored_workflow_unreadable", workflow=row["workflow_key"], error=str(err))
                continue
            self.active[definition.key] = definition
            log.info("workflow_loaded", workflow=definition.key, version=definition.version, stored=True)

    async def definition(self, key: str, version: int) -> Definition:
        """The version an enrollment pinned, from memory or from workflow_definitions."""
        cached = self._definitions.get((key, version))
        if cached is not None:
            return cached
        row = await self.pool.fetchrow(Q.get_definition, key, version)
        if row is None:
            raise LookupError(f"workflow {key} v{version} is not in workflow_definitions")
        try:
            definition = load_text(json.dumps(row["definition"]), f"{row['source']} (stored)")
        except DefinitionError as err:
            raise LookupError(str(err)) from err
        self._definitions[(key, version)] = definition
        return definition
