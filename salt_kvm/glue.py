"""What the thin loader modules share: error translation and the session.

This is the only library module that imports Salt (for its exception types),
and it still touches no dunder: the loader modules pass ``__context__`` and
their ``config.get`` in.
"""

from __future__ import annotations

import importlib.util
import re
from typing import TYPE_CHECKING, Any, Callable, Optional, Union

from salt_kvm import conn
from salt_kvm.errors import InvalidInput, KvmError

if TYPE_CHECKING:
    from salt.exceptions import CommandExecutionError, SaltInvocationError
else:
    try:
        from salt.exceptions import CommandExecutionError, SaltInvocationError
    except ImportError:  # pragma: no cover - the library is usable without Salt

        class CommandExecutionError(Exception):
            pass

        class SaltInvocationError(Exception):
            pass


INSTALL_HINT = "install salt-kvm with pip / salt-pip (salt-pip install salt-kvm)"


def missing_dependencies() -> list[str]:
    """Names of the missing Python dependencies, found without importing them."""
    missing = []
    for module, dist in (("libvirt", "libvirt-python"), ("pyroute2", "pyroute2"), ("lxml", "lxml")):
        if importlib.util.find_spec(module) is None:
            missing.append(dist)
    return missing


def virtual(virtualname: str) -> Union[str, tuple[bool, str]]:
    """``__virtual__`` for every kvm loader module."""
    missing = missing_dependencies()
    if missing:
        return False, f"{virtualname}: {', '.join(missing)} not installed; {INSTALL_HINT}"
    return virtualname


def session(
    context: dict[str, Any],
    config_get: Callable[..., Any],
    *,
    connection: Optional[str] = None,
) -> conn.Session:
    """The run's :class:`~salt_kvm.conn.Session` (uri from ``kvm:connection:uri``).

    ``connection`` (a libvirt URI, an execution function's per-call override)
    gets a session of its own, kept beside the run's so the two do not close
    each other's connection.
    """
    if connection is not None:
        uri = conn.check_uri(connection)
        return conn.session_from_context(context, uri, key=f"{conn.CONTEXT_KEY}@{uri}")
    uri = config_get("kvm:connection:uri", conn.DEFAULT_URI) or conn.DEFAULT_URI
    return conn.session_from_context(context, uri)


def plain(value: Any) -> Any:
    """``value`` with every dict and list copied into a plain ``dict``/``list``.

    Salt 3008 hands pillar data over as ``MaskedDict``/``MaskedList``, whose
    text form is ``'**********'`` outside a renderer; error messages and
    returns must show the operator's own values.
    """
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    return value


def check_pillar(func: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Like :func:`call` for a function that checks the pillar: a bad pillar is
    ``CommandExecutionError`` (every error on its own line), not
    ``SaltInvocationError``, which would make ``salt-call`` print the
    function's usage as if its arguments were wrong."""
    try:
        return call(func, *args, **kwargs)
    except SaltInvocationError as exc:
        raise CommandExecutionError(str(exc)) from None


#: the library's messages name options as a state or the pillar writes them
#: (``force: True``); an execution function takes keyword arguments (``force=True``)
_OPTION = re.compile(r"\b(force|purge|restart|children|external|overwrite): (True|False)\b")


def cli_message(text: str) -> str:
    """A library message as an execution function's caller should read it:
    ``set force: True`` -> ``set force=True``."""
    return _OPTION.sub(r"\1=\2", text)


def call(func: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Run a library function for an execution module; map errors to Salt's
    (messages say ``force=True``, the CLI's syntax, see :func:`cli_message`)."""
    try:
        return func(*args, **kwargs)
    except InvalidInput as exc:
        raise SaltInvocationError(cli_message(str(exc))) from None
    except KvmError as exc:
        raise CommandExecutionError(cli_message(str(exc))) from None
    except Exception as exc:  # pylint: disable=broad-except
        if conn.is_libvirt_error(exc):
            raise CommandExecutionError(conn.libvirt_message(exc)) from None
        raise
