"""The one state engine every ``kvm`` state uses, and the contract its resources keep.

Every ``*_present`` state describes what it manages with a :class:`Resource` and
hands it to :func:`ensure`, which owns the whole flow and returns Salt's state
return dict (``name``, ``result``, ``changes``, ``comment``)::

    current = resource.read()                  # what the host has (None: absent)
    plan    = resource.plan(current)           # a frozen Plan: changes, payload, notes
    if not plan.changes:  -> result True, "already as declared"
    if test:              -> result None, plan.changes, resource.summary(plan, test=True)
    undo = Undo()
    resource.apply(plan, undo)                 # does what the plan says, records in undo;
                                               # returns the plan of what it did when a part
                                               # was left pending (a detach never answered)
    after = resource.read()
    resource.verify(plan, after)               # what still differs (default: plan(after))
    failure -> resource.restore(current, undo) # puts the host back, says what it did

The rules every resource keeps, so that one resource teaches all of them:

* **Inputs are fixed at construction** (the session, the name, the validated
  declaration). ``read``, ``plan``, ``apply``, ``verify``, ``restore`` and
  ``summary`` never assign to ``self``: whatever one step learns and a later
  one needs travels in a value the engine passes on -- the :class:`Plan`
  (``payload`` for apply and summary) or the :class:`Undo` log (what apply did,
  for restore). The engine checks this when ``KVT_STRICT_CONTRACT`` is set
  (the test suites set it) and fails the state if a resource changed itself.
* ``plan`` raises :class:`~salt_kvm.errors.Refused` for a change that would lose
  data and :class:`~salt_kvm.errors.InvalidInput` for bad input, before
  anything is changed, in test mode too.
* ``apply`` may raise :class:`~salt_kvm.errors.KvmError`; what it did before
  failing is in the undo log.
* ``restore`` returns a short description of what it put back, or ``None``
  when the resource cannot restore (the comment then says the host may be
  changed).

Nothing here knows about Salt's loader.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import types
from collections.abc import Callable, Mapping
from typing import Any, Optional

from salt_kvm import units
from salt_kvm.errors import InvalidInput, KvmError, Refused

log = logging.getLogger(__name__)

#: ``{key: {"old": ..., "new": ...}}``, Salt's ``changes``
Changes = dict[str, Any]


def normalise(value: Any) -> Any:
    """Comparable form: lists of scalars keep order; dicts compare by value."""
    if isinstance(value, dict):
        return {k: normalise(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [normalise(v) for v in value]
    return value


def diff(
    current: Optional[Mapping[str, Any]], desired: Mapping[str, Any], *, ignore_unset: bool = True
) -> Changes:
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


#: keys of a pillar entry that steer its state (remove it, allow a loss, delete its data),
#: not part of what the object is
STATE_ONLY = ("absent", "force", "purge")


def declared(spec: Mapping[str, Any], state_only: tuple[str, ...] = STATE_ONLY) -> dict[str, Any]:
    """A validated declaration without its ``state_only`` keys (the one way to strip them):
    what a resource compares with the host. A kind that reads one of them itself (a pool's
    ``force`` redefines it) names the ones it strips."""
    return {key: value for key, value in spec.items() if key not in state_only}


def state_return(
    name: str, result: Optional[bool] = True, changes: Optional[Changes] = None, comment: str = ""
) -> dict[str, Any]:
    """Salt's state return dict."""
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


def for_people(ret: Any) -> Any:
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


@dataclasses.dataclass(frozen=True)
class Plan:
    """What one run would do to one object, computed before anything changes.

    ``changes`` is what Salt shows (and what ``test=True`` predicts); ``payload``
    is whatever the resource's ``apply`` and ``summary`` need beyond it (a
    frozen dataclass or a tuple of its own); ``notes`` are extra comment
    fragments found while planning; ``existed`` says whether the object was
    there when the plan was made. The mapping is read-only: the engine hands a
    copy to Salt.
    """

    changes: Mapping[str, Any]
    existed: bool = True
    payload: Any = None
    notes: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "changes", types.MappingProxyType(dict(self.changes)))

    def salt_changes(self) -> Changes:
        """A plain dict of ``changes`` for the state return."""
        return dict(self.changes)


class Undo:
    """The engine's record of what :meth:`Resource.apply` did, for :meth:`Resource.restore`.

    ``apply`` calls :meth:`record` right after each step that ``restore`` would
    have to undo (``undo.record("made_dir", path)``); ``restore`` reads them back
    with :meth:`get` / ``in``. A step that was never reached is not in the log.
    """

    def __init__(self) -> None:
        self._steps: dict[str, Any] = {}

    def record(self, step: str, value: Any = True) -> None:
        self._steps[step] = value

    def get(self, step: str, default: Any = None) -> Any:
        return self._steps.get(step, default)

    def __contains__(self, step: object) -> bool:
        return step in self._steps

    def __bool__(self) -> bool:
        return bool(self._steps)


class Resource:
    """What a state manages; subclasses implement the steps of the contract above.

    Class attributes (constants, never changed by a run):
    ``what`` names the object in comments ("dir pool 'default'"); ``plural``
    when it names several (``snapshots 'auto-*' of VM 'web01'``: "are", "were");
    ``presence_key`` is the change key that only says "it is new"
    (``bridge``: ``{old: None, new: name}``), left out of the keys a creation lists.
    """

    what: str = "object"
    plural: bool = False
    presence_key: Optional[str] = None

    def read(self) -> Any:
        """Current state (a dict of the declared keys, or a model), ``None`` when absent."""
        raise NotImplementedError

    def plan(self, current: Any) -> Plan:
        """The :class:`Plan` that takes ``current`` to the declared state.

        Raise :class:`~salt_kvm.errors.Refused` for a change that would lose data.
        """
        raise NotImplementedError

    def apply(self, plan: Plan, undo: Undo) -> Optional[Plan]:
        """Make the planned changes, recording in ``undo`` what restore would undo.

        Return ``None``, or, when part of the plan could not be done and that is no
        failure (a running VM's guest that does not release a device: the change
        waits for its restart), the :class:`Plan` of what was done, which the state
        return then reports.
        """
        raise NotImplementedError

    def verify(self, plan: Plan, after: Any) -> Changes:
        """What still differs after apply: the changes of a plan from the read-back."""
        return dict(self.plan(after).changes)

    def restore(self, before: Any, undo: Undo) -> Optional[str]:
        """Put the host back as ``before`` after a failed apply or verify.

        Return a short description of what was restored, or ``None`` when the
        resource cannot restore.
        """
        return None

    def summary(self, plan: Plan, test: bool) -> str:
        """Comment for a run that changes something: created (with the keys
        set), else changed (the keys changed)."""
        verb = "would be" if test else ("were" if self.plural else "was")
        changes = plan.changes
        if not plan.existed:
            keys = ", ".join(sorted(k for k in changes if k != self.presence_key))
            text = f"{self.what} {verb} created" + (f" ({keys})" if keys else "")
        else:
            text = f"{self.what} {verb} changed ({', '.join(sorted(changes))})"
        return text + "".join(f" (note: {note})" for note in plan.notes)


def _plain(value: Any, depth: int = 0) -> Any:
    """A comparable copy of plain data (dicts, lists, scalars); other objects by identity."""
    if depth > 20:
        return id(value)
    if isinstance(value, dict):
        return {k: _plain(v, depth + 1) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v, depth + 1) for v in value]
    if isinstance(value, set):
        return sorted(map(repr, value))
    if value is None or isinstance(value, (str, int, float, bool, bytes)):
        return value
    return ("id", id(value))


def _fingerprint(resource: Resource) -> dict[str, Any]:
    return {key: _plain(value) for key, value in vars(resource).items()}


def _strict() -> bool:
    return bool(os.environ.get("KVT_STRICT_CONTRACT"))


class ContractBroken(KvmError):
    """A resource assigned to itself between the engine's calls (see the module docstring)."""


def _check_unchanged(resource: Resource, before: Optional[dict[str, Any]], step: str) -> None:
    if before is None:
        return
    now = _fingerprint(resource)
    if now != before:
        keys = sorted(k for k in set(now) | set(before) if now.get(k) != before.get(k))
        raise ContractBroken(
            f"{type(resource).__name__}.{step} changed the resource's own state "
            f"({', '.join(keys)}); a resource keeps no state between the engine's calls"
        )


def ensure(name: str, resource: Resource, *, test: bool = False) -> dict[str, Any]:
    """Run ``resource`` through the engine; return Salt's state return dict."""
    what = resource.what
    fingerprint = _fingerprint(resource) if _strict() else None
    try:
        current = resource.read()
        planned = resource.plan(current)
        _check_unchanged(resource, fingerprint, "plan")
    except InvalidInput as exc:
        return state_return(name, False, comment=f"{what}: {exc}")
    except Refused as exc:
        return state_return(name, False, comment=f"{what}: refused: {exc}")
    except KvmError as exc:
        return state_return(name, False, comment=f"{what}: {exc}")

    plural = "are" if resource.plural else "is"
    if not planned.changes:
        return state_return(name, True, comment=f"{what} {plural} already as declared")
    if test:
        return state_return(name, None, planned.salt_changes(), resource.summary(planned, True))

    undo = Undo()
    try:
        done = resource.apply(planned, undo)
        if done is not None:  # it did not all go as planned (see Resource.apply)
            planned = done
        after = resource.read()
        remaining = resource.verify(planned, after)
        _check_unchanged(resource, fingerprint, "apply")
    except KvmError as exc:
        return _failed(name, resource, current, planned, undo, f"{exc}")
    except Exception as exc:  # pylint: disable=broad-except
        log.error("unexpected error applying %s: %s", what, exc)
        log.debug("unexpected error applying %s", what, exc_info=True)
        return _failed(name, resource, current, planned, undo, f"unexpected error: {exc}")
    if remaining:
        keys = ", ".join(
            f"{k} is {v['old']!r}, declared {v['new']!r}" for k, v in remaining.items()
        )
        return _failed(name, resource, current, planned, undo, f"verify after apply failed: {keys}")
    return state_return(name, True, planned.salt_changes(), resource.summary(planned, False))


def _failed(
    name: str, resource: Resource, before: Any, planned: Plan, undo: Undo, cause: str
) -> dict[str, Any]:
    what = resource.what
    try:
        restored = resource.restore(before, undo)
    except Exception as exc:  # pylint: disable=broad-except
        log.error("restoring %s failed: %s", what, exc)
        log.debug("restoring %s failed", what, exc_info=True)
        restored = None
        cause = f"{cause}; restoring it failed too: {exc}"
    if restored:
        return state_return(name, False, {}, f"{what}: {cause}; restored {restored}")
    return state_return(name, False, planned.salt_changes(), f"{what}: {cause}")


def absent(
    name: str,
    what: str,
    exists: Callable[[], Any],
    remove: Callable[[Any], Any],
    *,
    test: bool = False,
    guard: Optional[Callable[[Any], Any]] = None,
) -> dict[str, Any]:
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
