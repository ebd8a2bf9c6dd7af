"""Test helpers shared by all test modules: run services in-process, collect events."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from nats.js.api import ConsumerConfig, DeliverPolicy, PubAck

from libs.bus import Bus
from libs.event_outbox import _Row
from libs.events import Event, decode
from libs.service import Build, Clock, ServiceContext, ServiceSpec, serve
from libs.settings import CommonSettings

E = TypeVar("E", bound=Event)


class EventCollector:
    """Everything published on a subject filter, read from the stream (no race with publishers)."""

    def __init__(self, bus: Bus, subject: str) -> None:
        self.bus = bus
        self.subject = subject
        self.events: list[Event] = []
        self.headers: list[dict[str, str]] = []
        self._changed = asyncio.Condition()
        self._sub: Any = None

    async def start(self) -> EventCollector:
        async def on_msg(msg: Any) -> None:
            async with self._changed:
                self.events.append(decode(msg.data))
                self.headers.append(dict(msg.headers or {}))
                self._changed.notify_all()

        self._sub = await self.bus.js.subscribe(
            self.subject,
            cb=on_msg,
            stream=self.bus.stream,
            ordered_consumer=True,
            config=ConsumerConfig(deliver_policy=DeliverPolicy.ALL),
        )
        return self

    async def stop(self) -> None:
        if self._sub is not None:
            with contextlib.suppress(Exception):
                await self._sub.unsubscribe()

    def of_type(self, cls: type[E]) -> list[E]:
        return [e for e in self.events if isinstance(e, cls)]

    async def wait_for(
        self,
        cls: type[E],
        predicate: Callable[[E], bool] = lambda _: True,
        *,
        count: int = 1,
        timeout: float = 10.0,
    ) -> list[E]:
        """Wait until ``count`` events of ``cls`` match ``predicate``; return them."""

        def matching() -> list[E]:
            return [e for e in self.of_type(cls) if predicate(e)]

        async with asyncio.timeout(timeout):
            async with self._changed:
                await self._changed.wait_for(lambda: len(matching()) >= count)
        return matching()

    async def assert_none(
        self, cls: type[E], predicate: Callable[[E], bool] = lambda _: True, *, within: float = 0.5
    ) -> None:
        """Nothing matching arrives within ``within`` seconds (for negative assertions)."""
        with contextlib.suppress(TimeoutError):
            await self.wait_for(cls, predicate, timeout=within)
            raise AssertionError(f"unexpected {cls.__name__}: {self.of_type(cls)}")


class RunningService:
    def __init__(
        self, name: str, task: asyncio.Task[None], stop: asyncio.Event, ctx: ServiceContext[Any]
    ) -> None:
        self.name = name
        self.task = task
        self.stop_event = stop
        self.ctx = ctx

    async def stop(self, timeout: float = 30.0) -> None:
        self.stop_event.set()
        async with asyncio.timeout(timeout):
            await self.task


async def start_service(
    settings: CommonSettings,
    spec: ServiceSpec[Any] | None = None,
    *,
    clock: Clock | None = None,
    name: str = "",
    build: Build[Any] | None = None,
    migrations: Path | None = None,
    timeout: float = 30.0,
) -> RunningService:
    """Run a service's ``serve`` in this event loop until ready.

    A real service runs from its ``spec`` (with the test's ``clock``, else the spec's);
    what its build made is in ``.ctx.parts``. Tests of the runner itself pass an ad hoc
    ``name``/``build``/``migrations`` instead."""
    if spec is not None:
        name, build, migrations = spec.name, spec.bind(clock), spec.migrations
    assert build is not None and name, "start_service needs a spec or a name and a build"
    stop, ready = asyncio.Event(), asyncio.Event()
    contexts: list[ServiceContext[Any]] = []
    task = asyncio.create_task(
        serve(
            settings,
            name=name,
            build=build,
            migrations=migrations,
            stop=stop,
            ready=ready,
            on_ready=contexts.append,
        )
    )
    ready_wait = asyncio.create_task(ready.wait())
    done, _ = await asyncio.wait({task, ready_wait}, timeout=timeout, return_when="FIRST_COMPLETED")
    if task in done:
        ready_wait.cancel()
        task.result()  # raises the start-up error
        raise RuntimeError(f"{name} stopped during start-up")
    if ready_wait not in done:
        ready_wait.cancel()
        stop.set()
        raise TimeoutError(f"{name} not ready within {timeout}s")
    return RunningService(name, task, stop, contexts[0])


async def stays(check: Callable[[], Any], *, within: float = 0.5, interval: float = 0.05) -> None:
    """A negative assertion over time: the (async or sync) check holds for ``within`` seconds.

    For "nothing more happens" where there is no event to wait on (a row that must
    not appear, a fake that must not be called again).
    """
    deadline = time.monotonic() + within
    while True:
        result = check()
        if asyncio.iscoroutine(result):
            result = await result
        if not result:
            raise AssertionError("condition stopped holding")
        if time.monotonic() > deadline:
            return
        await asyncio.sleep(interval)


async def eventually(check: Callable[[], Any], *, timeout: float = 10.0, interval: float = 0.05) -> Any:
    """Poll an (async or sync) check until it returns a truthy value; return that value."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        await asyncio.sleep(interval)


def fail_first_publish(service: RunningService, subject_part: str) -> list[str]:
    """Make the service's event outbox fail its first publish of an event whose subject
    contains ``subject_part``, as if NATS went away (or the process died) right after
    the unit committed; returns the list the failed event's msg id is appended to.
    Undone when ``service`` stops (the outbox is the service's own)."""
    outbox = service.ctx.outbox
    assert outbox is not None, "the service has no event outbox"
    publish = outbox._publish
    failed: list[str] = []

    async def fail_first(rows: Sequence[_Row]) -> list[PubAck]:
        if not failed and any(subject_part in r.subject for r in rows):
            failed.append(rows[0].msg_id)
            raise ConnectionError("NATS went away right after the commit")
        return await publish(rows)

    outbox._publish = fail_first  # type: ignore[method-assign]
    return failed


def eventually_sync(check: Callable[[], Any], *, timeout: float = 10.0, interval: float = 0.05) -> Any:
    """:func:`eventually` for synchronous tests (e.g. other processes' state, no event loop)."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        time.sleep(interval)
