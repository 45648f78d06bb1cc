"""What the thin loader modules share: error translation and the session.

This is the only library module that imports Salt (for its exception types),
and it still touches no dunder: the loader modules pass ``__context__`` and
their ``config.get`` in.
"""

import importlib.util

from salt_kvm import conn
from salt_kvm.errors import InvalidInput, KvmError

try:
    from salt.exceptions import CommandExecutionError, SaltInvocationError
except ImportError:  # pragma: no cover - the library is usable without Salt

    class CommandExecutionError(Exception):
        pass

    class SaltInvocationError(Exception):
        pass


INSTALL_HINT = "install salt-kvm with pip / salt-pip (salt-pip install salt-kvm)"


def missing_dependencies():
    """Names of the missing Python dependencies, found without importing them."""
    missing = []
    for module, dist in (("libvirt", "libvirt-python"), ("pyroute2", "pyroute2"), ("lxml", "lxml")):
        if importlib.util.find_spec(module) is None:
            missing.append(dist)
    return missing


def virtual(virtualname):
    """``__virtual__`` for every kvm loader module."""
    missing = missing_dependencies()
    if missing:
        return False, f"{virtualname}: {', '.join(missing)} not installed; {INSTALL_HINT}"
    return virtualname


def session(context, config_get):
    """The run's :class:`~salt_kvm.conn.Session` (uri from ``kvm:connection:uri``)."""
    uri = config_get("kvm:connection:uri", conn.DEFAULT_URI) or conn.DEFAULT_URI
    return conn.session_from_context(context, uri)


def call(func, *args, **kwargs):
    """Run a library function for an execution module; map errors to Salt's."""
    try:
        return func(*args, **kwargs)
    except InvalidInput as exc:
        raise SaltInvocationError(str(exc)) from None
    except KvmError as exc:
        raise CommandExecutionError(str(exc)) from None
    except Exception as exc:  # pylint: disable=broad-except
        if conn.HAS_LIBVIRT and isinstance(exc, conn.libvirt.libvirtError):
            raise CommandExecutionError(conn.libvirt_message(exc)) from None
        raise
