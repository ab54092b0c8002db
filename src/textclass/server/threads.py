"""Work off the event loop in daemon threads, so that no request's thread can keep a stopping server alive.

anyio's and concurrent.futures' worker threads are joined when the interpreter exits: one long tokenizer call left
behind by a cancelled request kept a server that had closed its port running (and a core busy) until SIGKILL.
Here each call gets a daemon thread and an asyncio future; cancelling the await abandons the result (the call is
bounded by the request's limits, so it ends soon after), and process exit never waits for it.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")


async def in_thread(function: Callable[..., T], *args: Any) -> T:
    """`function(*args)` in a daemon thread; cancellable on the awaiting side."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future = loop.create_future()

    def settle(outcome: Any, failed: bool) -> None:
        if not future.done():
            (future.set_exception if failed else future.set_result)(outcome)

    def work() -> None:
        try:
            outcome, failed = function(*args), False
        except BaseException as exc:  # noqa: BLE001 - every outcome goes back to the awaiting request
            outcome, failed = exc, True
        try:
            loop.call_soon_threadsafe(settle, outcome, failed)
        except RuntimeError:  # the loop closed: nobody is waiting any more
            pass

    threading.Thread(target=work, name="textclass-work", daemon=True).start()
    return await future


def lingering_threads() -> list[str]:
    """Names of the non-daemon threads other than this one that would keep the process alive at exit."""
    current = threading.current_thread()
    return [t.name for t in threading.enumerate() if t is not current and not t.daemon and t.is_alive()]
