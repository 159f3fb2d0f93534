"""The HTTP libraries the SDK runs on: httpx (the dependency) and httpx2 (the ``[httpx2]`` extra).

httpx2 is pydantic's fork of httpx 0.28.1 with the same API under another import name, but
its classes are distinct (an ``httpx2.Response`` is not an ``httpx.Response``). So a client
picks one library, once, and builds every request, header set, timeout and pool with it;
errors of any loaded library are translated.

The choice is always explicit, never "httpx2 because it is installed":

1. ``http_library="httpx"`` / ``"httpx2"``, if given;
2. else the library of ``http_client`` or ``transport``, if given (an ``httpx2.AsyncClient``
   means httpx2);
3. else the ``CODAT_HTTP_LIBRARY`` environment variable;
4. else httpx.
"""

from __future__ import annotations

import functools
import importlib
import os
import ssl
import sys
from dataclasses import dataclass, field
from types import ModuleType
from typing import TYPE_CHECKING, Any, Final, Literal, cast

import httpx

from ._exceptions import ConfigurationError

if TYPE_CHECKING:
    from ._types import AsyncBaseTransport, AsyncClient, Headers, Request, Timeout

__all__ = [
    "ENV_VAR",
    "LIBRARY_NAMES",
    "HttpLibrary",
    "HttpLibraryName",
    "default_library",
    "library_named",
    "resolve_library",
]

HttpLibraryName = Literal["httpx", "httpx2"]
LIBRARY_NAMES: Final[tuple[HttpLibraryName, ...]] = ("httpx", "httpx2")
ENV_VAR: Final = "CODAT_HTTP_LIBRARY"


@dataclass(frozen=True, eq=False)
class ErrorClasses:
    """Each category of transport error, as a tuple over every library loaded, so that an
    httpx error met on an httpx2 client (a wrapped custom transport, say) is still typed."""

    timeout: tuple[type[Exception], ...]
    connect: tuple[type[Exception], ...]
    unsendable: tuple[type[Exception], ...]
    transport: tuple[type[Exception], ...]
    timeout_phases: dict[type[Exception], str]
    byte_streams: tuple[type[Any], ...]
    any_error: tuple[type[Exception], ...]
    modules: tuple[ModuleType, ...]


def _error_classes(modules: tuple[ModuleType, ...]) -> ErrorClasses:
    phases: dict[type[Exception], str] = {}
    for m in modules:
        phases.update(
            {m.ConnectTimeout: "connect", m.ReadTimeout: "read", m.WriteTimeout: "write"}
        )
        phases[m.PoolTimeout] = "pool"
    return ErrorClasses(
        timeout=tuple(m.TimeoutException for m in modules),
        connect=tuple(m.ConnectError for m in modules),
        unsendable=tuple(
            cls
            for m in modules
            for cls in (m.LocalProtocolError, m.UnsupportedProtocol, m.InvalidURL)
        ),
        transport=tuple(m.TransportError for m in modules),
        timeout_phases=phases,
        byte_streams=tuple(m.AsyncByteStream for m in modules),
        any_error=tuple(m.HTTPError for m in modules),
        modules=modules,
    )


@dataclass(frozen=True, eq=False)
class HttpLibrary:
    """One HTTP library: the module, and what the SDK builds with it."""

    name: HttpLibraryName
    module: ModuleType
    errors: ErrorClasses = field(repr=False)

    @property
    def version(self) -> str:
        return str(self.module.__version__)

    def headers(self, values: dict[str, str]) -> Headers:
        return cast("Headers", self.module.Headers(values))

    def request(
        self,
        method: str,
        url: str,
        *,
        headers: Headers,
        content: bytes | None,
        extensions: dict[str, Any],
    ) -> Request:
        return cast(
            "Request",
            self.module.Request(
                method, url, headers=headers, content=content, extensions=extensions
            ),
        )

    def timeout(self, timeout: httpx.Timeout) -> Timeout:
        """``timeout`` (kept as an ``httpx.Timeout`` in the settings) in this library's type."""
        if self.module is httpx:
            return timeout
        return cast("Timeout", self.module.Timeout(**timeout.as_dict()))

    def pool_transport(
        self, *, verify: Any, max_connections: int, keepalive_expiry: float
    ) -> AsyncBaseTransport:
        limits = self.module.Limits(
            max_connections=max_connections,
            max_keepalive_connections=max_connections,
            keepalive_expiry=keepalive_expiry,
        )
        if verify is True:
            verify = self.default_tls_context()
        return cast(
            "AsyncBaseTransport",
            self.module.AsyncHTTPTransport(verify=verify, limits=limits, trust_env=False),
        )

    @functools.cache  # noqa: B019 - two libraries at most, both live for the process
    def default_tls_context(self) -> ssl.SSLContext:
        """This library's default verifying context (httpx: certifi's bundle; httpx2: the
        system's trust store), built once and shared by every pool the SDK builds: loading
        a CA bundle costs more CPU (~30 ms) than the rest of building a client."""
        return cast("ssl.SSLContext", self.module.create_ssl_context(trust_env=False))

    def lifecycle_client(
        self, transport: AsyncBaseTransport, timeout: httpx.Timeout
    ) -> AsyncClient:
        """An ``AsyncClient`` that only owns ``transport``'s lifecycle (requests go to the
        transport directly)."""
        return cast(
            "AsyncClient",
            self.module.AsyncClient(
                transport=transport,
                timeout=self.timeout(timeout),
                follow_redirects=False,
                trust_env=False,
            ),
        )

    def is_async_client(self, obj: object) -> bool:
        return isinstance(obj, self.module.AsyncClient)


def _loaded_modules(first: ModuleType) -> tuple[ModuleType, ...]:
    modules = [first]
    for name in LIBRARY_NAMES:
        module = sys.modules.get(name)
        if module is not None and all(module is not m for m in modules):
            modules.append(module)
    return tuple(modules)


_LIBRARIES: dict[str, HttpLibrary] = {}


def library_named(name: str) -> HttpLibrary:
    """The library called ``name`` (imported on first use), or a ConfigurationError."""
    library = _LIBRARIES.get(name)
    if library is not None:
        loaded = _loaded_modules(library.module)
        if len(loaded) == len(library.errors.modules):
            return library
        # The other library was imported since: recognise its errors too.
        library = HttpLibrary(library.name, library.module, _error_classes(loaded))
        _LIBRARIES[name] = library
        return library
    if name not in LIBRARY_NAMES:
        raise ConfigurationError(
            f"http_library must be one of {', '.join(map(repr, LIBRARY_NAMES))}, not {name[:40]!r}"
        )
    try:
        module = importlib.import_module(name)
    except ImportError:
        raise ConfigurationError(
            f"http_library={name!r} needs the {name} package: "
            f"pip install 'codat-commerce-async[{name}]'"
        ) from None
    # Under httpx2.alias_httpx(), "httpx" is httpx2: name the library by what it is.
    actual = module.__name__ if module.__name__ in LIBRARY_NAMES else name
    library = HttpLibrary(actual, module, _error_classes(_loaded_modules(module)))
    _LIBRARIES[name] = library
    return library


def _library_of(obj: object) -> HttpLibrary | None:
    """The library whose class ``obj`` is an instance of (None: a library-neutral object,
    such as a transport that lists the libraries it serves in ``http_libraries``)."""
    if isinstance(getattr(obj, "http_libraries", None), tuple):
        return None
    for name in LIBRARY_NAMES:
        module = sys.modules.get(name)  # an object of a library that is not loaded cannot exist
        if module is not None and isinstance(obj, (module.AsyncClient, module.AsyncBaseTransport)):
            # Under httpx2.alias_httpx() both names are one module: the first name wins.
            return library_named(name)
    return None


def default_library() -> HttpLibrary:
    """The library of a client given no library, client or transport: ``CODAT_HTTP_LIBRARY``,
    else httpx."""
    return library_named(os.environ.get(ENV_VAR, "").strip() or "httpx")


def resolve_library(
    http_library: str | None, *, http_client: object = None, transport: object = None
) -> HttpLibrary:
    """Apply the selection rules in this module's docstring; refuse mismatches."""
    given = http_client if http_client is not None else transport
    owner = None if given is None else _library_of(given)
    if http_library is not None:
        if not isinstance(http_library, str):
            raise ConfigurationError("http_library must be 'httpx', 'httpx2' or None")
        library = library_named(http_library)
        if owner is not None and owner.module is not library.module:
            what = "http_client" if http_client is not None else "transport"
            raise ConfigurationError(
                f"http_library={library.name!r} but {what} is an {owner.name} object; "
                f"pass a {library.name} one, or drop http_library"
            )
    elif owner is not None:
        library = owner
    else:
        library = default_library()
    served = getattr(transport, "http_libraries", None)
    if isinstance(served, tuple) and library.name not in served:
        raise ConfigurationError(f"this transport does not serve {library.name} requests")
    if http_client is not None and not library.is_async_client(http_client):
        raise ConfigurationError(
            "http_client must be an httpx.AsyncClient or an httpx2.AsyncClient"
        )
    return library
