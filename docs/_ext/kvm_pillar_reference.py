"""The ``kvm-pillar-reference`` directive: the pillar reference generated from the schema.

It walks :data:`salt_kvm.schema.PILLAR` and writes, for every key of every
section, its path (``kvm:bridges:<bridge>:stp``), type, allowed values,
default and description (the descriptions are data in ``salt_kvm/schema.py``,
attached with :func:`salt_kvm.schema.describe`). So the reference cannot drift
from what validation accepts; tests/unit/test_docs_reference.py checks that
every key has a description and appears here.

:func:`entries` and :func:`render` are plain functions, used by the directive
and by the tests.
"""

from collections import namedtuple

from docutils import nodes
from docutils.parsers.rst import Directive
from docutils.statemachine import StringList
from sphinx.util.nodes import nested_parse_with_titles

from salt_kvm import schema

#: what a name stands for in a path, by the key of the mapping it is in
PLACEHOLDERS = {
    "bridges": "<bridge>",
    "networks": "<network>",
    "pools": "<pool>",
    "volumes": "<volume>",
    "snapshots": "<vm>",
}

#: one key: ``path`` as in error messages, with placeholders for names and list indexes
Entry = namedtuple("Entry", "path key field record description default required")


def _children(field, path):
    """``(record, path)`` of the record(s) below ``field`` at ``path``."""
    key = path.rsplit(":", 1)[-1]
    if isinstance(field, schema.Record):
        yield field, path
    elif isinstance(field, schema.Map):
        yield from _children(field.value, f"{path}:{PLACEHOLDERS.get(key, '<name>')}")
    elif isinstance(field, schema.Ports):
        yield schema.PORT, f"{path}:<i>"
    elif isinstance(field, schema.List):
        yield from _children(field.item, f"{path}:<i>")


def entries(record=schema.PILLAR, path="kvm"):
    """Every key below ``record``, depth first, in the schema's order."""
    for key, field in record.fields.items():
        kpath = f"{path}:{key}"
        yield Entry(
            kpath,
            key,
            field,
            record,
            record.docs.get(key, ""),
            record.defaults.get(key),
            key in record.required,
        )
        for sub, spath in _children(field, kpath):
            yield from entries(sub, spath)


def _lit(value):
    if isinstance(value, bool):
        value = "true" if value else "false"
    return f"``{value}``"


def _range(field):
    lo, hi = field.minimum, field.maximum
    if lo is not None and hi is not None:
        return f"{lo}-{hi}"
    if lo is not None:
        return f"at least {lo}"
    if hi is not None:
        return f"at most {hi}"
    return "any"


def describe_type(field):
    """``(type, allowed values)`` of a schema field, as text for the reference."""
    if isinstance(field, schema.Bool):
        return "boolean", "``true`` or ``false``"
    if isinstance(field, schema.PortOrAuto):
        return "port", f"``auto`` or {_range(field)}"
    if isinstance(field, schema.MappingOrText):
        if field.text:
            return "mapping or string", f"a mapping (written as YAML) or a string used as it is, at most {field.max_len // 1024 // 1024} MiB"
        return "mapping", "a mapping (written as YAML)"
    if isinstance(field, schema.Number):
        return "number", _range(field)
    if isinstance(field, schema.Int):
        return "integer", _range(field)
    if isinstance(field, schema.Enum):
        return "one of", ", ".join(_lit(c) for c in field.choices)
    if isinstance(field, schema.Size):
        return "size", "``512M``, ``20G``, ``1.5T`` or a number of bytes (binary units)"
    if isinstance(field, schema.Duration):
        return "duration", "``90s``, ``30m``, ``12h``, ``7d``, ``2w`` or a number of seconds"
    if isinstance(field, schema.Interface):
        version = f"IPv{field.version} " if field.version else "IPv4 or IPv6 "
        return "address with prefix", f"an {version}address with its prefix length (``192.0.2.10/24``)"
    if isinstance(field, schema.Network):
        return "network", "a network (``198.51.100.0/24``) or ``default``"
    if isinstance(field, schema.Address):
        return "IP address", f"an IPv{field.version} address" if field.version else "an IPv4 or IPv6 address"
    if isinstance(field, schema.Mac):
        return "MAC address", "six hex pairs separated by ``:`` or ``-``"
    if isinstance(field, schema.VlanList):
        return "VLAN list", "VLAN ids and ranges (``100-110``) in 1-4094, as a list or one item"
    if isinstance(field, schema.Secret):
        return "string (secret)", f"{field.min_len}-{field.max_len} characters; never shown"
    if isinstance(field, schema.Str):
        if field.pattern is not None:
            return "string", f"{field.what}, at most {field.max_len} characters"
        return "string", f"{field.min_len}-{field.max_len} characters"
    if isinstance(field, schema.Ports):
        return "list or mapping of ports", "names, ``{name: ..., ...}`` mappings, or a mapping of names to settings (the keys below)"
    if isinstance(field, schema.List):
        itype, allowed = describe_type(field.item)
        extra = []
        if field.min_len:
            extra.append(f"at least {field.min_len}")
        if field.unique:
            extra.append("no duplicates")
        if isinstance(field.item, schema.Record):
            allowed = "mappings with the keys below"
        return f"list of {itype}", "; ".join([allowed] + extra)
    if isinstance(field, schema.Map):
        what = field.key.what if isinstance(field.key, schema.Str) and field.key.pattern else "any name"
        return "mapping of names", f"names: {what}; values: the keys below"
    if isinstance(field, schema.Record):
        return "mapping", "the keys below"
    return "any", "any value"


def _default(entry):
    if entry.required:
        return "required"
    if entry.default is None:
        return "—"
    text = str(entry.default)
    return text if " " in text else _lit(text)


def _entry_rst(entry):
    ftype, allowed = describe_type(entry.field)
    return [
        f"``{entry.path}``",
        f"   {entry.description or '(no description)'}",
        "",
        f"   :Type: {ftype}",
        f"   :Allowed: {allowed}",
        f"   :Default: {_default(entry)}",
        "",
    ]


def _pool_types_rst():
    needs = getattr(schema, "_POOL_NEEDS", {})
    lines = [
        "Keys each pool type needs",
        "^^^^^^^^^^^^^^^^^^^^^^^^^",
        "",
        "Checked before anything changes (paths below ``kvm:pools:<pool>``):",
        "",
        ".. list-table::",
        "   :header-rows: 1",
        "",
        "   * - ``type``",
        "     - required keys",
    ]
    for ptype in schema.POOL_TYPES:
        keys = ", ".join(f"``{k.replace('.', ':')}``" for k in needs.get(ptype, ())) or "—"
        lines += [f"   * - ``{ptype}``", f"     - {keys}"]
    return lines + [""]


def render(record=schema.PILLAR, root="kvm"):
    """The reference as reStructuredText lines: one section per top-level key."""
    lines = []
    for key in record.fields:
        top = [e for e in entries(record, root) if e.path == f"{root}:{key}" or e.path.startswith(f"{root}:{key}:")]
        title = f"``{root}:{key}``"
        ftype, allowed = describe_type(top[0].field)
        lines += [title, "~" * len(title), "", top[0].description or "(no description)", ""]
        lines += [f":Type: {ftype}", f":Allowed: {allowed}", ""]
        for entry in top[1:]:
            lines += _entry_rst(entry)
        if key == "pools":
            lines += _pool_types_rst()
    return lines


class PillarReference(Directive):
    """``.. kvm-pillar-reference::`` -- every key of the ``kvm`` pillar."""

    has_content = False

    def run(self):
        # rebuild the page when the schema (its descriptions) or this extension changes
        env = self.state.document.settings.env
        env.note_dependency(schema.__file__)
        env.note_dependency(__file__)
        container = nodes.section()
        nested_parse_with_titles(self.state, StringList(render(), source="salt_kvm/schema.py"), container)
        return container.children


def setup(app):
    app.add_directive("kvm-pillar-reference", PillarReference)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}
