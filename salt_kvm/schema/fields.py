"""The generic field library of the pillar schema: typed values, records and maps.

A :class:`Field` checks one value and returns it normalised, or ``_INVALID``
after adding ``(path, message)`` to an :class:`Errors` list. :class:`Record`
(known keys), :class:`Map` (names to values) and :class:`List` nest fields;
:func:`describe` attaches the pillar reference's text; :func:`validate` raises
:class:`~salt_kvm.errors.InvalidInput` listing every error. Nothing here knows
about bridges, networks, pools or VMs: the records are in the sibling modules.
"""

from __future__ import annotations

import difflib
import ipaddress
import re
import typing
from typing import Callable, Iterable, Optional

from salt_kvm import units
from salt_kvm.errors import InvalidInput

_INVALID = object()


class Errors(list):
    def add(self, path: str, message: str) -> None:
        self.append((path, message))


def _join(path, key):
    return f"{path}:{key}" if path else str(key)


def _show(value):
    try:
        text = repr(value)
    except ValueError:  # an int of more than 4300 digits cannot be shown
        text = f"<a {type(value).__name__} too large to show>"
    return text if len(text) <= 60 else text[:57] + "..."


class Field:
    """A typed value. ``check`` returns the normalised value or ``_INVALID``."""

    def __init__(self, default: typing.Any = None, doc: str = "") -> None:
        self.default = default
        self.doc = doc

    def check(
        self, value: typing.Any, path: str, errors: Errors
    ) -> typing.Any:  # pragma: no cover - abstract
        raise NotImplementedError


class Any(Field):
    def check(self, value: typing.Any, path: str, errors: Errors) -> typing.Any:
        return value


class Bool(Field):
    def check(self, value: typing.Any, path: str, errors: Errors) -> typing.Any:
        if isinstance(value, bool):
            return value
        errors.add(path, f"{_show(value)} is not true or false")
        return _INVALID


class Int(Field):
    def __init__(
        self, minimum: Optional[float] = None, maximum: Optional[float] = None, **kw: typing.Any
    ) -> None:
        super().__init__(**kw)
        self.minimum, self.maximum = minimum, maximum

    def check(self, value: typing.Any, path: str, errors: Errors) -> typing.Any:
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, str) and re.fullmatch(r"-?\d{1,12}", value.strip()):
                value = int(value)
            else:
                errors.add(path, f"{_show(value)} is not a whole number")
                return _INVALID
        if (
            self.minimum is not None
            and value < self.minimum
            or self.maximum is not None
            and value > self.maximum
        ):
            errors.add(path, f"{_show(value)} is out of range {self.minimum}-{self.maximum}")
            return _INVALID
        return value


class Number(Int):
    """A whole or decimal number (STP timers in seconds, ...)."""

    def check(self, value: typing.Any, path: str, errors: Errors) -> typing.Any:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            errors.add(path, f"{_show(value)} is not a number")
            return _INVALID
        if (
            value != value
            or (self.minimum is not None and value < self.minimum)
            or (self.maximum is not None and value > self.maximum)
        ):
            errors.add(path, f"{value} is out of range {self.minimum}-{self.maximum}")
            return _INVALID
        return value


class Str(Field):
    def __init__(
        self,
        pattern: Optional[str] = None,
        max_len: int = 255,
        *,
        what: str = "a valid value",
        min_len: int = 1,
        **kw: typing.Any,
    ) -> None:
        super().__init__(**kw)
        self.pattern = re.compile(pattern) if pattern else None
        self.max_len, self.min_len, self.what = max_len, min_len, what

    def check(self, value: typing.Any, path: str, errors: Errors) -> typing.Any:
        if not isinstance(value, str):
            errors.add(path, f"{_show(value)} is not a string")
            return _INVALID
        if len(value) < self.min_len:
            errors.add(path, "must not be empty")
            return _INVALID
        if self.max_len and len(value) > self.max_len:
            errors.add(path, f"{_show(value)} is longer than {self.max_len} characters")
            return _INVALID
        if self.pattern and not self.pattern.fullmatch(value):
            errors.add(path, f"{_show(value)} is not {self.what}")
            return _INVALID
        return value


class Secret(Str):
    """A password or key: checked like :class:`Str`, but an error never shows the value."""

    def check(self, value: typing.Any, path: str, errors: Errors) -> typing.Any:
        found = Errors()
        result = super().check(value, path, found)
        if found:
            errors.add(
                path,
                (
                    f"is not a valid secret (a string of {self.min_len}-{self.max_len} "
                    "characters; the value is not shown)"
                ),
            )
        return result


class Enum(Field):
    def __init__(self, *choices: typing.Any, **kw: typing.Any) -> None:
        super().__init__(**kw)
        self.choices = choices

    def check(self, value: typing.Any, path: str, errors: Errors) -> typing.Any:
        # compare by type too: 1, 0 and 1.0 are not the choices True / False
        if any(
            c is value
            if isinstance(c, bool) or isinstance(value, bool)
            else type(c) is type(value) and c == value
            for c in self.choices
        ):
            return value
        hint = _suggest(value, [c for c in self.choices if isinstance(c, str)])
        allowed = ", ".join(str(c) for c in self.choices)
        errors.add(path, f"{_show(value)} is not one of {allowed}{hint}")
        return _INVALID


class Size(Field):
    def check(self, value: typing.Any, path: str, errors: Errors) -> typing.Any:
        try:
            return units.parse_size(value)
        except ValueError as exc:
            errors.add(path, str(exc))
            return _INVALID


class Duration(Field):
    def check(self, value: typing.Any, path: str, errors: Errors) -> typing.Any:
        try:
            return units.parse_duration(value)
        except ValueError as exc:
            errors.add(path, str(exc))
            return _INVALID


class Address(Field):
    """An IP address (``version`` 4, 6 or None for either)."""

    def __init__(self, version: Optional[int] = None, **kw: typing.Any) -> None:
        super().__init__(**kw)
        self.version = version

    def check(self, value: typing.Any, path: str, errors: Errors) -> typing.Any:
        try:
            addr = ipaddress.ip_address(value if isinstance(value, str) else "")
        except ValueError:
            errors.add(
                path,
                f"{_show(value)} is not an "
                f"IP{'v%d' % self.version if self.version else ''} address",
            )
            return _INVALID
        if self.version and addr.version != self.version:
            errors.add(path, f"{_show(value)} is not an IPv{self.version} address")
            return _INVALID
        return str(addr)


class Interface(Address):
    """An address with its prefix (``192.0.2.10/24``), kept as given but normalised."""

    def check(self, value: typing.Any, path: str, errors: Errors) -> typing.Any:
        if not isinstance(value, str) or "/" not in value:
            errors.add(
                path, f"{_show(value)} is not an address with a prefix length (like 192.0.2.10/24)"
            )
            return _INVALID
        try:
            iface = ipaddress.ip_interface(value)
        except ValueError:
            errors.add(path, f"{_show(value)} is not a valid CIDR address")
            return _INVALID
        if self.version and iface.version != self.version:
            errors.add(path, f"{_show(value)} is not an IPv{self.version} address")
            return _INVALID
        return str(iface)


class Network(Address):
    """A network (``198.51.100.0/24``) or ``default``."""

    def check(self, value: typing.Any, path: str, errors: Errors) -> typing.Any:
        if value == "default":
            return value
        try:
            return str(ipaddress.ip_network(value if isinstance(value, str) else "", strict=False))
        except ValueError:
            errors.add(path, f"{_show(value)} is not a network (like 198.51.100.0/24)")
            return _INVALID


class Mac(Field):
    _RE = re.compile(r"([0-9a-fA-F]{2}[:-]){5}[0-9a-fA-F]{2}")

    def check(self, value: typing.Any, path: str, errors: Errors) -> typing.Any:
        if not isinstance(value, str) or not self._RE.fullmatch(value):
            errors.add(path, f"{_show(value)} is not a MAC address")
            return _INVALID
        return value.lower().replace("-", ":")


class VlanList(Field):
    """VLAN ids as ``[10, '100-110']`` -> sorted unique list of ints in 1-4094."""

    def check(self, value: typing.Any, path: str, errors: Errors) -> typing.Any:
        items = value if isinstance(value, list) else [value]
        out: set[int] = set()
        for i, item in enumerate(items):
            ipath = _join(path, i) if isinstance(value, list) else path
            if isinstance(item, bool):
                errors.add(ipath, f"{_show(item)} is not a VLAN id or range")
                return _INVALID
            if isinstance(item, int):
                lo = hi = item
            elif isinstance(item, str) and re.fullmatch(r"\s*\d{1,5}\s*(-\s*\d{1,5}\s*)?", item):
                parts = [int(p) for p in item.split("-")]
                lo, hi = parts[0], parts[-1]
            else:
                errors.add(ipath, f"{_show(item)} is not a VLAN id or range (like 100-110)")
                return _INVALID
            if not (1 <= lo <= hi <= 4094):
                errors.add(ipath, f"{_show(item)} is out of VLAN range 1-4094")
                return _INVALID
            out.update(range(lo, hi + 1))
        return sorted(out)


class List(Field):
    def __init__(
        self, item: Field, min_len: int = 0, *, unique: bool = False, **kw: typing.Any
    ) -> None:
        super().__init__(**kw)
        self.item, self.min_len, self.unique = item, min_len, unique

    def check(self, value: typing.Any, path: str, errors: Errors) -> typing.Any:
        if isinstance(value, (str, dict)) or not isinstance(value, (list, tuple)):
            errors.add(path, f"{_show(value)} is not a list")
            return _INVALID
        if len(value) < self.min_len:
            errors.add(path, f"needs at least {self.min_len} item(s)")
            return _INVALID
        out, ok = [], True
        for i, item in enumerate(value):
            checked = self.item.check(item, _join(path, i), errors)
            if checked is _INVALID:
                ok = False
            out.append(checked)
        if ok and self.unique:
            seen = set()
            for i, item in enumerate(out):
                key = repr(item)
                if key in seen:
                    errors.add(_join(path, i), f"{_show(item)} is listed twice")
                    ok = False
                seen.add(key)
        return out if ok else _INVALID


class Map(Field):
    """A mapping of names (checked by ``key``) to values (checked by ``value``)."""

    def __init__(self, key: Field, value: Field, **kw: typing.Any) -> None:
        super().__init__(**kw)
        self.key, self.value = key, value

    def check(self, value: typing.Any, path: str, errors: Errors) -> typing.Any:
        if value is None:
            return {}
        if not isinstance(value, dict):
            errors.add(path, f"{_show(value)} is not a mapping")
            return _INVALID
        out, ok = {}, True
        for name, item in value.items():
            ipath = _join(path, name)
            if self.key.check(name, ipath, errors) is _INVALID:
                ok = False
                continue
            checked = self.value.check({} if item is None else item, ipath, errors)
            if checked is _INVALID:
                ok = False
            out[name] = checked
        return out if ok else _INVALID


class Record(Field):
    """A mapping with known keys. ``required`` keys must be present.

    ``check_all(record, path, errors)`` (optional) runs cross-field checks on
    the normalised record.
    """

    def __init__(
        self,
        fields: dict[str, Field],
        required: Iterable[str] = (),
        *,
        check_all: Optional[Callable[[dict, str, Errors], None]] = None,
        shorthand: Optional[str] = None,
        **kw: typing.Any,
    ) -> None:
        super().__init__(**kw)
        self.fields = fields
        self.required = tuple(required)
        self.check_all = check_all
        #: when the value is a scalar, it is taken as ``{shorthand: value}``
        self.shorthand = shorthand
        #: per key: its description and its default as shown in the pillar reference
        #: (set with :func:`describe`; documentation only, never read by validation)
        self.docs: dict[str, str] = {}
        self.defaults: dict[str, typing.Any] = {}

    def check(self, value: typing.Any, path: str, errors: Errors) -> typing.Any:
        if self.shorthand and isinstance(value, str):
            value = {self.shorthand: value}
        if not isinstance(value, dict):
            errors.add(path, f"{_show(value)} is not a mapping")
            return _INVALID
        out, ok = {}, True
        for key, item in value.items():
            ipath = _join(path, key)
            field = self.fields.get(key)
            if field is None:
                errors.add(ipath, f"unknown key {_show(key)}{_suggest(key, self.fields)}")
                ok = False
                continue
            if item is None and not isinstance(field, (Map, Record)):
                continue
            checked = field.check(item, ipath, errors)
            if checked is _INVALID:
                ok = False
            else:
                out[key] = checked
        for key in self.required:
            if key not in value or value[key] is None:
                errors.add(_join(path, key), "is required")
                ok = False
        if ok and self.check_all:
            before = len(errors)
            self.check_all(out, path, errors)
            ok = len(errors) == before
        return out if ok else _INVALID


def _suggest(word, choices):
    if not isinstance(word, str):
        return ""
    close = difflib.get_close_matches(word, [str(c) for c in choices], n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def describe(record: Record, docs: dict[str, typing.Any]) -> Record:
    """Attach the pillar reference's text to the keys of ``record`` and return it.

    ``docs`` maps every key to its description, or to ``(description, default)``
    where ``default`` is what applies when the key is not given. Documentation
    only: validation never reads it. docs/pillar.rst is generated from it, and
    tests/unit/test_docs_reference.py fails when a key has no description.
    """
    for key, text in docs.items():
        if key not in record.fields:
            raise KeyError(f"describe: {key!r} is not a key of this record")
        text, default = text if isinstance(text, tuple) else (text, None)
        record.docs[key] = text
        if default is not None:
            record.defaults[key] = default
    return record


class UrlOrPath(Str):
    """A path or an http(s) URL, which may carry a password (``user:pw@host``):
    an error shows the URL with its userinfo as ``***``."""

    def check(self, value: typing.Any, path: str, errors: Errors) -> typing.Any:
        found = Errors()
        result = super().check(value, path, found)
        if found and isinstance(value, str):
            masked = re.sub(r"^([a-zA-Z][a-zA-Z0-9+.-]*://)[^/?#]*@", r"\1***@", value)
            found = Errors((p, m.replace(_show(value), _show(masked))) for p, m in found)
        errors.extend(found)
        return result


class MappingOrText(Field):
    """A mapping (written as YAML) or a string used as it is: cloud-init's files."""

    def __init__(self, max_len: int = 1024 * 1024, text: bool = True, **kw: typing.Any) -> None:
        super().__init__(**kw)
        self.max_len, self.text = max_len, text

    def check(self, value: typing.Any, path: str, errors: Errors) -> typing.Any:
        if isinstance(value, dict):
            bad = [k for k in value if not isinstance(k, str)]
            if bad:
                errors.add(path, f"key {_show(bad[0])} is not a string")
                return _INVALID
            return value
        if self.text and isinstance(value, str):
            if len(value.encode()) > self.max_len:
                errors.add(path, f"is longer than {self.max_len} bytes")
                return _INVALID
            return value
        errors.add(
            path,
            f"{_show(type(value).__name__)} is not a mapping{' or a string' if self.text else ''}",
        )
        return _INVALID


class PortOrAuto(Int):
    """A TCP port, or ``auto``."""

    def check(self, value: typing.Any, path: str, errors: Errors) -> typing.Any:
        return value if value == "auto" else super().check(value, path, errors)


def validate(schema: Field, value: typing.Any, path: str) -> typing.Any:
    """Check ``value`` against ``schema``; return the normalised value.

    Raise :class:`~salt_kvm.errors.InvalidInput` listing every error, each with its path.
    """
    errors = Errors()
    result = schema.check(value, path, errors)
    if errors or result is _INVALID:
        if not errors:  # pragma: no cover - defensive
            errors.add(path, "is not valid")
        (first_path, first_msg) = errors[0]
        raise InvalidInput(first_path, first_msg, list(errors))
    return result
