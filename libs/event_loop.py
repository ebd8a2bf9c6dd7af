"""Which event loop a service process runs on: uvloop by default, asyncio's own on request.

uvloop (libuv underneath) does the same work as asyncio's selector loop with less
CPU per socket read and write, which is most of what the services do. It runs the
same code: signal handlers, subprocesses, ``reuse_port`` listeners and
``asyncio.timeout`` all work on it. ``REPLYLINE_EVENT_LOOP=asyncio`` is the way
back (a platform without a uvloop wheel, or to rule the loop out when debugging).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Literal

EventLoopName = Literal["uvloop", "asyncio"]
LoopFactory = Callable[[], asyncio.AbstractEventLoop]


def loop_factory(name: EventLoopName) -> LoopFactory | None:
    """The ``asyncio.Runner(loop_factory=...)`` for ``name``; None means asyncio's default."""
    if name == "asyncio":
        return None
    import uvloop  # imported only when chosen: the asyncio choice must work without it

    return uvloop.new_event_loop


def running_loop_name() -> str:
    """``module.Class`` of the running loop, for the start-up log line (``uvloop.Loop``)."""
    loop = asyncio.get_running_loop()
    return f"{type(loop).__module__}.{type(loop).__qualname__}"
