"""The libvirt connection and the per-run session that shares it.

One :class:`Session` per Salt run: the loader modules keep it in
``__context__`` so every state of one ``state.apply`` reuses one connection and
one listing per object kind (``session.memo``), and every write drops the
listings (``session.invalidate``). Ad hoc execution calls start from fresh
listings (the loader calls :meth:`Session.fresh`).
"""

import contextlib
import logging
import threading

from salt_kvm.errors import KvmError

log = logging.getLogger(__name__)

DEFAULT_URI = "qemu:///system"
CONTEXT_KEY = "salt_kvm.session"


def _import_libvirt():
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


def __getattr__(name):
    """``conn.libvirt`` and ``conn.HAS_LIBVIRT`` import libvirt-python on first access (PEP 562)."""
    if name in ("libvirt", "HAS_LIBVIRT"):
        _import_libvirt()
        return globals()[name]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _lv():
    """libvirt-python, or ``None`` when it is not installed (imported, or tried, once)."""
    return globals()["libvirt"] if "libvirt" in globals() else _import_libvirt()


def libvirt_message(exc):
    """One line from a libvirtError (libvirt's own message, without the noise)."""
    msg = None
    get = getattr(exc, "get_error_message", None)
    if get:
        msg = get()
    return (msg or str(exc)).strip().splitlines()[0] if (msg or str(exc)) else repr(exc)


@contextlib.contextmanager
def libvirt_errors(what):
    """Turn a ``libvirtError`` raised inside into ``KvmError("<what>: <libvirt's message>")``."""
    try:
        yield
    except _lv().libvirtError as exc:
        raise KvmError(f"{what}: {libvirt_message(exc)}") from None


class CountingConnection:
    """A transparent proxy around ``virConnect`` that counts calls by name.

    Used by the design test that checks the number of libvirt calls of a
    no-op apply grows linearly, and by the bench's in-process counters.
    """

    def __init__(self, conn, counter):
        self._conn = conn
        self._counter = counter

    def __getattr__(self, name):
        attr = getattr(self._conn, name)
        if not callable(attr):
            return attr
        counter = self._counter

        def call(*args, **kwargs):
            counter[name] = counter.get(name, 0) + 1
            return attr(*args, **kwargs)

        return call


class Session:
    """A libvirt connection opened on first use, plus memoised listings."""

    def __init__(self, uri=DEFAULT_URI, count_calls=False):
        self.uri = uri or DEFAULT_URI
        self._conn = None
        self._lock = threading.RLock()
        self.cache = {}
        self.calls = {} if count_calls else None

    @property
    def conn(self):
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

    def _open(self):
        libvirt = _lv()
        if libvirt is None:
            raise KvmError("libvirt-python is not installed (install salt-kvm with pip / salt-pip)")
        try:
            conn = libvirt.open(self.uri)
        except libvirt.libvirtError as exc:
            raise KvmError(
                f"cannot connect to libvirt at {self.uri}: {libvirt_message(exc)}"
            ) from None
        if conn is None:  # pragma: no cover - old bindings
            raise KvmError(f"cannot connect to libvirt at {self.uri}")
        if self.calls is not None:
            return CountingConnection(conn, self.calls)
        return conn

    def memo(self, key, loader):
        """Return ``cache[key]``, computing it with ``loader()`` the first time."""
        try:
            return self.cache[key]
        except KeyError:
            value = self.cache[key] = loader()
            return value

    def invalidate(self, prefix=None):
        """Forget memoised listings (all of them, or those whose key starts with ``prefix``)."""
        if prefix is None:
            self.cache.clear()
            return
        for key in [k for k in self.cache if str(k).startswith(prefix)]:
            del self.cache[key]

    def fresh(self):
        """Drop listings so an ad hoc call sees the host as it is now; return self."""
        self.cache.clear()
        return self

    def close(self):
        with self._lock:
            if self._conn is not None:
                try:
                    self._conn.close()
                except Exception:  # pylint: disable=broad-except
                    pass
                self._conn = None
            self.cache.clear()


def memo_key(kind, *parts):
    """The one shape of a ``session.memo`` key: ``kind:listing[:qualifier...]``.

    ``kind`` is the library module that owns the listing (``bridge``, ``network``,
    ``storage``, ``snapshot``, ``vm``), so ``session.invalidate(f"{kind}:")`` drops
    everything that module read; e.g. ``memo_key("storage", "vols", pool)``.
    """
    return ":".join((kind, *parts))


def session_from_context(context, uri=DEFAULT_URI, key=CONTEXT_KEY):
    """The session kept in a Salt ``__context__`` under ``key`` (created on first use)."""
    session = context.get(key)
    if session is None or session.uri != (uri or DEFAULT_URI):
        if session is not None:
            session.close()
        session = context[key] = Session(uri)
    return session


def check_uri(uri):
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


def lookup_domain(session, name):
    """The libvirt domain called ``name``; :class:`~salt_kvm.errors.NotFound` if none."""
    from salt_kvm.errors import NotFound  # pylint: disable=import-outside-toplevel

    libvirt = _lv()
    try:
        return session.conn.lookupByName(name)
    except libvirt.libvirtError as exc:
        if exc.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN:
            raise NotFound(f"VM '{name}' does not exist on {session.uri}") from None
        raise KvmError(f"VM '{name}': {libvirt_message(exc)}") from None
