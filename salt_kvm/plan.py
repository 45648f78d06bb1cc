"""The one state engine every ``kvm`` state uses.

Desired -> current -> diff -> (test? report) -> apply -> read back -> verify,
with rollback when a change was made and the result is not what was declared.
A state describes itself with a :class:`Resource`; :func:`ensure` does the rest
and returns Salt's state return dict (``name``, ``result``, ``changes``,
``comment``). Nothing here knows about Salt's loader.
"""

import logging

from salt_kvm import units
from salt_kvm.errors import InvalidInput, KvmError, Refused

log = logging.getLogger(__name__)


def normalise(value):
    """Comparable form: lists of scalars keep order; dicts compare by value."""
    if isinstance(value, dict):
        return {k: normalise(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [normalise(v) for v in value]
    return value


def diff(current, desired, ignore_unset=True):
    """``{key: {"old": current[key], "new": desired[key]}}`` for every differing key.

    Only the keys in ``desired`` are compared (what the user declared); a
    desired value of ``None`` means "not declared" when ``ignore_unset``.
    """
    current = current or {}
    changes = {}
    for key, want in desired.items():
        if want is None and ignore_unset:
            continue
        have = current.get(key)
        if normalise(have) != normalise(want):
            changes[key] = {"old": have, "new": want}
    return changes


def state_return(name, result=True, changes=None, comment=""):
    return {"name": name, "result": result, "changes": changes or {}, "comment": comment}


#: keys whose whole numbers are sizes in bytes, wherever they sit in ``changes``
SIZE_KEYS = frozenset(("size", "capacity", "allocation", "available", "memory", "max_memory"))


def _human(value, in_size):
    """``(value for people, the bytes it replaced or None)``."""
    if isinstance(value, dict):
        shown, raw = {}, {}
        for key, item in value.items():
            shown[key], sub = _human(item, in_size or key in SIZE_KEYS)
            if sub is not None:
                raw[key] = sub
        return shown, (raw or None)
    if in_size and isinstance(value, int) and not isinstance(value, bool):
        return units.human_size(value), value
    return value, None


def for_people(ret):
    """A state return as Salt prints it: sizes in ``changes`` written for people.

    ``changes: {size: {old: 536870912, new: 2147483648}}`` becomes
    ``changes: {size: {old: '512 MiB', new: '2 GiB'}}`` (what the highstate
    outputter shows), and the bytes are kept, in the same shape, under the
    return's ``bytes`` key (``--out=json`` shows both; the highstate output
    only the readable one). A return without sizes is returned unchanged.
    """
    if not isinstance(ret, dict) or not isinstance(ret.get("changes"), dict):
        return ret
    shown, raw = _human(ret["changes"], False)
    if raw is None:
        return ret
    return dict(ret, changes=shown, bytes=raw)


class Resource:
    """What a state manages. Subclasses implement the four steps.

    ``what`` names the object in comments ("dir pool 'default'").
    """

    what = "object"
    #: ``what`` names several objects (``snapshots 'auto-*' of VM 'web01'``): "are", "were"
    plural = False
    #: the change key that only says "it is new" (``bridge``: ``{old: None, new: name}``);
    #: left out of the keys a creation lists
    presence_key = None
    #: set by :func:`ensure`: whether the object existed before this run
    existed = True

    def read(self):
        """Current state as a dict of the declared keys, or ``None`` when absent."""
        raise NotImplementedError

    def changes(self, current):
        """``{key: {old, new}}`` to go from ``current`` to the declared state.

        Raise :class:`~salt_kvm.errors.Refused` for a change that would lose data.
        """
        raise NotImplementedError

    def apply(self, current, changes):
        """Make the changes. May raise :class:`~salt_kvm.errors.KvmError`."""
        raise NotImplementedError

    def verify(self, after):
        """What still differs after apply (default: :meth:`changes` of the read-back)."""
        return self.changes(after)

    def restore(self, before):
        """Put the host back as ``before`` after a failed apply or verify.

        Return a short description of what was restored, or ``None`` when the
        resource cannot restore (the comment then says the host may be changed).
        """
        return None

    def summary(self, changes, test):
        """Comment for a run that changes something: created (with the keys
        set), else changed (the keys changed)."""
        verb = "would be" if test else ("were" if self.plural else "was")
        if not self.existed:
            keys = ", ".join(sorted(k for k in changes if k != self.presence_key))
            return f"{self.what} {verb} created" + (f" ({keys})" if keys else "")
        keys = ", ".join(sorted(changes))
        return f"{self.what} {verb} changed ({keys})"


def ensure(name, resource, test=False):
    """Run ``resource`` through the engine; return Salt's state return dict."""
    what = resource.what
    try:
        current = resource.read()
        resource.existed = current is not None
        changes = resource.changes(current)
    except InvalidInput as exc:
        return state_return(name, False, comment=f"{what}: {exc}")
    except Refused as exc:
        return state_return(name, False, comment=f"{what}: refused: {exc}")
    except KvmError as exc:
        return state_return(name, False, comment=f"{what}: {exc}")

    if not changes:
        return state_return(
            name, True, comment=f"{what} {'are' if resource.plural else 'is'} already as declared"
        )
    if test:
        return state_return(name, None, changes, resource.summary(changes, True))

    try:
        resource.apply(current, changes)
        after = resource.read()
        remaining = resource.verify(after)
    except KvmError as exc:
        return _failed(name, resource, current, changes, f"{exc}")
    except Exception as exc:  # pylint: disable=broad-except
        log.error("unexpected error applying %s: %s", what, exc)
        log.debug("unexpected error applying %s", what, exc_info=True)
        return _failed(name, resource, current, changes, f"unexpected error: {exc}")
    if remaining:
        keys = ", ".join(
            f"{k} is {v['old']!r}, declared {v['new']!r}" for k, v in remaining.items()
        )
        return _failed(name, resource, current, changes, f"verify after apply failed: {keys}")
    return state_return(name, True, changes, resource.summary(changes, False))


def _failed(name, resource, before, changes, cause):
    what = resource.what
    try:
        restored = resource.restore(before)
    except Exception as exc:  # pylint: disable=broad-except
        log.error("restoring %s failed: %s", what, exc)
        log.debug("restoring %s failed", what, exc_info=True)
        restored = None
        cause = f"{cause}; restoring it failed too: {exc}"
    if restored:
        return state_return(name, False, {}, f"{what}: {cause}; restored {restored}")
    return state_return(name, False, changes, f"{what}: {cause}")


def absent(name, what, exists, remove, test=False, guard=None):
    """The common shape of an ``*_absent`` state.

    ``exists()`` -> current description or None; ``guard(current)`` may raise
    :class:`Refused`; ``remove(current)`` removes it.
    """
    try:
        current = exists()
        if current is None:
            return state_return(name, True, comment=f"{what} is already absent")
        if guard:
            guard(current)
        changes = {"removed": {"old": current, "new": None}}
        if test:
            return state_return(name, None, changes, f"{what} would be removed")
        remove(current)
        if exists() is not None:
            return state_return(name, False, changes, f"{what} still exists after removal")
    except Refused as exc:
        return state_return(name, False, comment=f"{what}: refused: {exc}")
    except KvmError as exc:
        return state_return(name, False, comment=f"{what}: {exc}")
    return state_return(name, True, changes, f"{what} was removed")
