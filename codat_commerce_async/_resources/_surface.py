"""Each operation is declared once; the four surfaces derive their methods from it.

A declaration is an async function on :class:`~.sync.SyncAPI`, wrapped in one of:

- :func:`endpoint`: one HTTP call, written to return the :class:`APIResponse`;
- :func:`method`: an async helper built on calls (``wait_for_sync``);
- :func:`bulk`: a factory of :class:`BulkRun` (``request_sync_many`` ...).

Read through a surface, a declaration becomes that surface's method, with the same
parameters and docstring, and a type checker sees the surface's return type:

====================  ===================  =====================  ================
declaration           async (``client``)   ``.with_raw_response``  blocking
====================  ===================  =====================  ================
endpoint -> ``T``     ``Awaitable[T]``     ``Awaitable[APIResponse[T]]``  ``T`` / ``APIResponse[T]``
method -> ``T``       ``Awaitable[T]``     (absent)               ``T``
bulk                  ``BulkRun``          (absent)               ``BlockingBulkRun``
====================  ===================  =====================  ================
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Awaitable, Callable, Coroutine
from contextlib import AbstractAsyncContextManager, AbstractContextManager
from typing import TYPE_CHECKING, Any, Concatenate, Generic, ParamSpec, Protocol, TypeVar, overload

from .._response import APIResponse

if TYPE_CHECKING:
    from .._bulk import BlockingBulkRun, BulkRun

__all__ = [
    "AsyncSurface",
    "BlockingRawSurface",
    "BlockingSurface",
    "Declaration",
    "RawSurface",
    "bulk",
    "endpoint",
    "method",
]

P = ParamSpec("P")
T = TypeVar("T")


class LoopCaller(Protocol):
    """Runs a coroutine function on the blocking facade's event loop and waits."""

    def call(self, fn: Callable[..., Coroutine[Any, Any, T]], *args: Any, **kwargs: Any) -> T: ...

    def wrap_async_context_manager(
        self, cm: AbstractAsyncContextManager[T]
    ) -> AbstractContextManager[T]: ...


class AsyncSurface:
    """Methods return the model."""


class RawSurface:
    """Methods return the :class:`APIResponse` (``with_raw_response``)."""

    _target: Any


class BlockingSurface:
    """Blocking methods: each call crosses into the facade's loop thread."""

    _loop: LoopCaller
    _target: Any


class BlockingRawSurface:
    """Blocking methods returning the :class:`APIResponse`."""

    _loop: LoopCaller
    _target: Any


class Declaration:
    """The shared part of a declaration: its function and name; binds once per instance."""

    kind = ""

    def __init__(self, fn: Callable[..., Any]) -> None:
        self.fn = fn
        self.name = fn.__name__
        signature = inspect.signature(fn)
        #: The signature the surfaces show (without ``self``).
        self.signature = signature.replace(parameters=list(signature.parameters.values())[1:])

    def _get(self, instance: object | None) -> Any:
        if instance is None:
            return self
        bound = self._bind(instance)
        functools.update_wrapper(bound, self.fn)
        bound.__signature__ = self.signature  # type: ignore[attr-defined]
        # Cached on the instance: the next lookup finds it before this descriptor.
        instance.__dict__[self.name] = bound
        return bound

    def _bind(self, instance: object) -> Callable[..., Any]:
        raise AttributeError(f"{type(instance).__name__} has no {self.kind} {self.name!r}")

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name


class Endpoint(Declaration, Generic[P, T]):
    kind = "endpoint"

    @overload
    def __get__(self, instance: None, owner: type) -> Endpoint[P, T]: ...
    @overload
    def __get__(
        self, instance: RawSurface, owner: type
    ) -> Callable[P, Awaitable[APIResponse[T]]]: ...
    @overload
    def __get__(self, instance: BlockingRawSurface, owner: type) -> Callable[P, APIResponse[T]]: ...
    @overload
    def __get__(self, instance: BlockingSurface, owner: type) -> Callable[P, T]: ...
    @overload
    def __get__(self, instance: AsyncSurface, owner: type) -> Callable[P, Awaitable[T]]: ...
    def __get__(self, instance: object | None, owner: type) -> Any:
        return self._get(instance)

    def _bind(self, instance: object) -> Callable[..., Any]:
        fn = self.fn
        if isinstance(instance, AsyncSurface):

            async def parsed(*args: Any, **kwargs: Any) -> Any:
                return (await fn(instance, *args, **kwargs)).parsed

            return parsed
        if isinstance(instance, RawSurface):
            return functools.partial(fn, instance._target)
        if isinstance(instance, BlockingSurface):
            loop, target = instance._loop, getattr(instance._target, self.name)
            return functools.partial(loop.call, target)
        if isinstance(instance, BlockingRawSurface):
            return functools.partial(instance._loop.call, fn, instance._target)
        return super()._bind(instance)


class Method(Declaration, Generic[P, T]):
    kind = "method"

    @overload
    def __get__(self, instance: None, owner: type) -> Method[P, T]: ...
    @overload
    def __get__(self, instance: BlockingSurface, owner: type) -> Callable[P, T]: ...
    @overload
    def __get__(self, instance: AsyncSurface, owner: type) -> Callable[P, Awaitable[T]]: ...
    def __get__(self, instance: object | None, owner: type) -> Any:
        return self._get(instance)

    def _bind(self, instance: object) -> Callable[..., Any]:
        if isinstance(instance, AsyncSurface):
            return functools.partial(self.fn, instance)
        if isinstance(instance, BlockingSurface):
            return functools.partial(instance._loop.call, self.fn, instance._target)
        return super()._bind(instance)


class Bulk(Declaration, Generic[P]):
    kind = "bulk method"

    @overload
    def __get__(self, instance: None, owner: type) -> Bulk[P]: ...
    @overload
    def __get__(self, instance: BlockingSurface, owner: type) -> Callable[P, BlockingBulkRun]: ...
    @overload
    def __get__(self, instance: AsyncSurface, owner: type) -> Callable[P, BulkRun]: ...
    def __get__(self, instance: object | None, owner: type) -> Any:
        return self._get(instance)

    def _bind(self, instance: object) -> Callable[..., Any]:
        fn = self.fn
        if isinstance(instance, AsyncSurface):
            return functools.partial(fn, instance)
        if isinstance(instance, BlockingSurface):
            from .._bulk import BlockingBulkRun

            loop, target = instance._loop, instance._target

            def blocking(*args: Any, **kwargs: Any) -> BlockingBulkRun:
                return BlockingBulkRun(loop, fn(target, *args, **kwargs))

            return blocking
        return super()._bind(instance)


def endpoint(
    fn: Callable[Concatenate[Any, P], Awaitable[APIResponse[T]]],
) -> Endpoint[P, T]:
    """Declare an HTTP endpoint (the function returns the :class:`APIResponse`)."""
    return Endpoint(fn)


def method(fn: Callable[Concatenate[Any, P], Awaitable[T]]) -> Method[P, T]:
    """Declare an async helper built on calls (no raw twin)."""
    return Method(fn)


def bulk(fn: Callable[Concatenate[Any, P], BulkRun]) -> Bulk[P]:
    """Declare a bulk-run factory (its blocking twin returns a :class:`BlockingBulkRun`)."""
    return Bulk(fn)


def declarations(cls: type) -> dict[str, Declaration]:
    """Every declaration visible on ``cls``, by name (for parity tests and docs)."""
    found: dict[str, Declaration] = {}
    for klass in reversed(cls.__mro__):
        for name, value in vars(klass).items():
            if isinstance(value, Declaration):
                found[name] = value
    return found
