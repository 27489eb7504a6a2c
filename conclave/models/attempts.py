"""One loop for sending a request again: to the next endpoint of a pool (``pool.py``) or, after a pause, to the same
backend (``resilience.py``). The caller says what one attempt is and, when it fails, whether to go on (``failed``
returns True, after whatever bookkeeping or waiting it needs), to stop with the attempt's own error (False), or to
stop with another (it raises). A stream goes on to another attempt only if ``failed`` allows it, which callers refuse
once something was yielded: what a consumer already received cannot be taken back."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from typing import TypeVar

__all__ = ["first_result", "first_stream"]

T = TypeVar("T")
R = TypeVar("R")
Y = TypeVar("Y")

Failed = Callable[[T, Exception, bool], Awaitable[bool]]
"""``failed(try, error, started)``: go on to the next try? ``started``: the failed stream had yielded something."""


async def first_result(
    tries: Iterable[T],
    attempt: Callable[[T], Awaitable[R]],
    failed: Failed[T],
    exhausted: Callable[[], BaseException],
) -> R:
    """The result of the first try that succeeds; ``exhausted()`` is raised when every try failed and went on."""
    for each in tries:
        try:
            return await attempt(each)
        except Exception as exc:  # Ctrl-C and cancellation (BaseException) are never tried again
            if not await failed(each, exc, False):
                raise
    raise exhausted()


async def first_stream(
    tries: Iterable[T],
    attempt: Callable[[T], AsyncIterator[Y]],
    failed: Failed[T],
    exhausted: Callable[[], BaseException],
) -> AsyncIterator[Y]:
    """The items of the first try whose stream runs to its end, as they come."""
    for each in tries:
        started = False
        try:
            async for item in attempt(each):
                started = True
                yield item
            return
        except Exception as exc:  # a consumer's aclose (GeneratorExit) and cancellation pass through
            if not await failed(each, exc, started):
                raise
    raise exhausted()
