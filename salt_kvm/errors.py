"""Exceptions raised by the library.

The loader modules turn :class:`InvalidInput` into Salt's ``SaltInvocationError``
and every other :class:`KvmError` into ``CommandExecutionError``; states turn
them into ``result: False`` with the message as the comment.
"""

from __future__ import annotations

from typing import Optional


class KvmError(Exception):
    """A failure with a one-line cause that can be shown to the operator as is."""


class InvalidInput(KvmError):
    """Bad input. ``path`` names the field (``kvm:pools:default:type``)."""

    def __init__(
        self,
        path: str,
        message: str,
        errors: Optional[list[tuple[str, str]]] = None,
    ) -> None:
        self.path = path
        self.message = message
        #: every (path, message) found, the first one being ``(path, message)``
        self.errors = errors or [(path, message)]
        super().__init__(self._render())

    def _render(self) -> str:
        lines = [f"{p}: {m}" if p else m for p, m in self.errors]
        if len(lines) == 1:
            return lines[0]
        # one error per line: what a person scans, and what Salt's outputters indent
        return f"{len(lines)} errors:\n" + "\n".join(lines)


class Refused(KvmError):
    """A change that would lose data (or the host) and was not forced."""


class NotFound(KvmError):
    """The named object does not exist."""
