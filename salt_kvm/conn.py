"""The libvirt connection and the per-run session that shares it.

One :class:`Session` per Salt run: the loader modules keep it in
``__context__`` so every state of one ``state.apply`` reuses one connection and
one listing per object kind (``session.memo``), and every write drops the
listings (``session.invalidate``). Ad hoc execution calls start from fresh
listings (the loader calls :meth:`Session.fresh`).
"""

from __future__ import annotations

import contextlib
import logging
import threading
from typing import Any, Callable, Iterator, Optional

from salt_kvm.errors import KvmError

log = logging.getLogger(__name__)

DEFAULT_URI = "qemu:///system"
CONTEXT_KEY = "salt_kvm.session"


#: libvirt's domain state numbers (``virDomainState``), by the names ``virsh domstate`` uses
DOMAIN_STATES = {
    0: "nostate",
    1: "running",
    2: "blocked",
    3: "paused",
    4: "shutdown",
    5: "shutoff",
    6: "crashed",
    7: "pmsuspended",
}


def _import_libvirt() -> Any:
    """libvirt-python (``None`` when not installed), imported on first use.

    Not at import time: loading the bindings loads libvirt and its
    dependencies (about 10 MB and 10 ms), which ``salt-call`` start-up, the
    grains and calls that never talk to libvirtd (``kvm.validate_pillar``,
    the bridge functions) do not need.
    """
    try:
        import libvirt as module  # pylint: disable=import-outside-toplevel
    except ImportError:  # pragma: no cover
        module = None
    else:
        # libvirt prints every error to stderr unless a handler is registered; we
        # report errors ourselves, once, with the cause.
        module.registerErrorHandler(lambda _ctx, _err: None, None)
    globals().update(libvirt=module, HAS_LIBVIRT=module is not None)
    return module


def __getattr__(name: str) -> Any:
    """``conn.libvirt`` and ``conn.HAS_LIBVIRT`` import libvirt-python on first access (PEP 562)."""
    if name in ("libvirt", "HAS_LIBVIRT"):
        _import_libvirt()
        return globals()[name]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _lv() -> Any:
    """libvirt-python, or ``None`` when it is not installed (imported, or tried, once)."""
    return globals()["libvirt"] if "libvirt" in globals() else _import_libvirt()


def libvirt_message(exc: BaseException) -> str:
    """One line from a libvirtError (libvirt's own message, without the noise)."""
    msg = None
    get = getattr(exc, "get_error_message", None)
    if get:
        msg = get()
    return (msg or str(exc)).strip().splitlines()[0] if (msg or str(exc)) else repr(exc)


def is_libvirt_error(exc: BaseException) -> bool:
    """Whether ``exc`` is a ``libvirt.libvirtError`` (never, without libvirt-python)."""
    lv = _lv()
    return lv is not None and isinstance(exc, lv.libvirtError)


@contextlib.contextmanager
def libvirt_errors(what: str) -> Iterator[None]:
    """Turn a ``libvirtError`` raised inside into ``KvmError("<what>: <libvirt's message>")``."""
    try:
        yield
    except _lv().libvirtError as exc:
        raise KvmError(f"{what}: {libvirt_message(exc)}") from None


class Caught:
    """What :func:`libvirt_caught` caught: the ``libvirtError`` (``None``: nothing
    was raised), its code and its message. True when something was caught."""

    def __init__(self) -> None:
        #: the ``libvirt.libvirtError`` (``None``: nothing was raised)
        self.error: Any = None

    def __bool__(self) -> bool:
        return self.error is not None

    @property
    def code(self) -> Optional[int]:
        """libvirt's ``VIR_ERR_*`` code of the error (``None``: nothing caught)."""
        return None if self.error is None else self.error.get_error_code()

    @property
    def message(self) -> str:
        """libvirt's own message, as the error carries it (``""``: nothing caught)."""
        if self.error is None:
            return ""
        return self.error.get_error_message()


@contextlib.contextmanager
def libvirt_caught() -> Iterator[Caught]:
    """Catch a ``libvirtError`` raised inside, for a caller that handles it itself.

    ``with libvirt_caught():`` alone ignores it (an object removed while we
    looked, a best-effort clean-up); ``with libvirt_caught() as caught:`` keeps
    it in ``caught.error`` (with ``caught.code`` and ``caught.message``) for a
    handler that needs libvirt's error code or its raw message. Anything else
    propagates. :func:`libvirt_errors` is the one for an error that fails the call.
    """
    caught = Caught()
    try:
        yield caught
    except _lv().libvirtError as exc:
        caught.error = exc


class CountingConnection:
    """A transparent proxy around ``virConnect`` that counts calls by name.

    Used by the design test that checks the number of libvirt calls of a
    no-op apply grows linearly, and by the bench's in-process counters.
    """

    def __init__(self, conn: Any, counter: dict[str, int]) -> None:
        self._conn = conn
        self._counter = counter

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._conn, name)
        if not callable(attr):
            return attr
        counter = self._counter

        def call(*args: Any, **kwargs: Any) -> Any:
            counter[name] = counter.get(name, 0) + 1
            return attr(*args, **kwargs)

        return call


class Session:
    """A libvirt connection opened on first use, plus memoised listings."""

    def __init__(self, uri: Optional[str] = DEFAULT_URI, count_calls: bool = False) -> None:
        self.uri: str = uri or DEFAULT_URI
        self._conn: Any = None
        self._lock = threading.RLock()
        self.cache: dict[Any, Any] = {}
        self.calls: Optional[dict[str, int]] = {} if count_calls else None

    @property
    def conn(self) -> Any:
        """The open ``virConnect`` (opened on first use, reopened if it died)."""
        with self._lock:
            if self._conn is not None:
                try:
                    alive = self._conn.isAlive()
                except Exception:  # pylint: disable=broad-except
                    alive = False
                if not alive:
                    log.debug("libvirt connection to %s is gone, reopening", self.uri)
                    self._conn = None
                    self.cache.clear()
            if self._conn is None:
                self._conn = self._open()
            return self._conn

    def _open(self) -> Any:
        libvirt = _lv()
        if libvirt is None:
            raise KvmError("libvirt-python is not installed (install salt-kvm with pip / salt-pip)")
        with libvirt_errors(f"cannot connect to libvirt at {self.uri}"):
            conn = libvirt.open(self.uri)
        if conn is None:  # pragma: no cover - old bindings
            raise KvmError(f"cannot connect to libvirt at {self.uri}")
        if self.calls is not None:
            return CountingConnection(conn, self.calls)
        return conn

    def memo(self, key: Any, loader: Callable[[], Any]) -> Any:
        """Return ``cache[key]``, computing it with ``loader()`` the first time."""
        try:
            return self.cache[key]
        except KeyError:
            value = self.cache[key] = loader()
            return value

    def invalidate(self, prefix: Optional[str] = None) -> None:
        """Forget memoised listings (all of them, or those whose key starts with ``prefix``)."""
        if prefix is None:
            self.cache.clear()
            return
        for key in [k for k in self.cache if str(k).startswith(prefix)]:
            del self.cache[key]

    def fresh(self) -> Session:
        """Drop listings so an ad hoc call sees the host as it is now; return self."""
        self.cache.clear()
        return self

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                try:
                    self._conn.close()
                except Exception:  # pylint: disable=broad-except
                    pass
                self._conn = None
            self.cache.clear()


def memo_key(kind: str, *parts: str) -> str:
    """The one shape of a ``session.memo`` key: ``kind:listing[:qualifier...]``.

    ``kind`` is the library module that owns the listing (``bridge``, ``network``,
    ``storage``, ``snapshot``, ``vm``), so ``session.invalidate(f"{kind}:")`` drops
    everything that module read; e.g. ``memo_key("storage", "vols", pool)``.
    """
    return ":".join((kind, *parts))


def session_from_context(
    context: dict[str, Any], uri: Optional[str] = DEFAULT_URI, *, key: str = CONTEXT_KEY
) -> Session:
    """The session kept in a Salt ``__context__`` under ``key`` (created on first use)."""
    session = context.get(key)
    if session is None or session.uri != (uri or DEFAULT_URI):
        if session is not None:
            session.close()
        session = context[key] = Session(uri)
    return session


def check_uri(uri: Any) -> str:
    """``uri`` if it looks like a libvirt URI (``qemu:///system``,
    ``qemu+ssh://root@hv2/system``, ``test:///default``); else
    :class:`~salt_kvm.errors.InvalidInput` naming ``connection``."""
    from salt_kvm.errors import InvalidInput  # pylint: disable=import-outside-toplevel

    if (
        not isinstance(uri, str)
        or "://" not in uri
        or uri.startswith("://")
        or any(c.isspace() for c in uri)
    ):
        raise InvalidInput(
            "connection",
            f"{uri!r} is not a libvirt URI (like qemu:///system or qemu+ssh://root@hv2/system)",
        )
    return uri


def lookup_domain(session: Session, name: str) -> Any:
    """The libvirt domain called ``name``; :class:`~salt_kvm.errors.NotFound` if none."""
    from salt_kvm.errors import NotFound  # pylint: disable=import-outside-toplevel

    with libvirt_caught() as caught:
        return session.conn.lookupByName(name)
    if caught.code == _lv().VIR_ERR_NO_DOMAIN:
        raise NotFound(f"VM '{name}' does not exist on {session.uri}")
    raise KvmError(f"VM '{name}': {libvirt_message(caught.error)}")
