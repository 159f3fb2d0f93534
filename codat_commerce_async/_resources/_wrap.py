"""Typed wrappers that turn an async method into its raw-response or blocking twin,
so every signature and every line of behaviour exists once, on the async method."""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import Any, Concatenate, ParamSpec, Protocol, TypeVar

from .._response import APIResponse

P = ParamSpec("P")
T = TypeVar("T")


class _HasRawTarget(Protocol):
    _target: Any


def raw_twin(
    method: Callable[Concatenate[Any, P], Awaitable[T]],
) -> Callable[Concatenate[_HasRawTarget, P], Awaitable[APIResponse[T]]]:
    """The same method on a resource built with ``raw=True``: it returns the
    :class:`APIResponse` instead of only the model."""
    name = method.__name__

    @functools.wraps(method)
    async def wrapper(self: _HasRawTarget, /, *args: P.args, **kwargs: P.kwargs) -> APIResponse[T]:
        result: APIResponse[T] = await getattr(self._target, name)(*args, **kwargs)
        return result

    wrapper.__doc__ = f"Like ``{name}``, but return the :class:`APIResponse` with the model."
    return wrapper
