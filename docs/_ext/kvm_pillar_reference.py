"""The ``kvm-pillar-reference`` directive: the pillar reference generated from the schema.

It walks :data:`salt_kvm.schema.PILLAR` and writes, for every key of every
section, its path (``kvm:bridges:<bridge>:stp``), type, allowed values,
default and description (the descriptions are data in ``salt_kvm/schema/``,
attached with :func:`salt_kvm.schema.describe`), and after the bridges, networks
and pools the rows of their tables (:mod:`salt_kvm.bridge_attrs`,
:mod:`salt_kvm.network_modes`, :mod:`salt_kvm.pool_types`). So the reference cannot drift
from what validation accepts; tests/unit/test_docs_reference.py checks that
every key has a description and appears here.

:func:`entries` and :func:`render` are plain functions, used by the directive
and by the tests.
"""

import glob
import os
from collections import namedtuple

from docutils import nodes
from docutils.parsers.rst import Directive
from docutils.statemachine import StringList
from sphinx.util.nodes import nested_parse_with_titles

from salt_kvm import bridge_attrs, network_modes, pool_types, schema

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
            return (
                "mapping or string",
                (
                    "a mapping (written as YAML) or a string used as it is, at most "
                    f"{field.max_len // 1024 // 1024} MiB"
                ),
            )
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
        return (
            "address with prefix",
            f"an {version}address with its prefix length (``192.0.2.10/24``)",
        )
    if isinstance(field, schema.Network):
        return "network", "a network (``198.51.100.0/24``) or ``default``"
    if isinstance(field, schema.Address):
        return (
            "IP address",
            f"an IPv{field.version} address" if field.version else "an IPv4 or IPv6 address",
        )
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
        return (
            "list or mapping of ports",
            (
                "names, ``{name: ..., ...}`` mappings, or a mapping of names to settings (the "
                "keys below)"
            ),
        )
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
        what = (
            field.key.what
            if isinstance(field.key, schema.Str) and field.key.pattern
            else "any name"
        )
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


def _list_table(title, intro, header, rows):
    lines = [title, "^" * len(title), "", intro, "", ".. list-table::", "   :header-rows: 1", ""]
    for row in [header] + rows:
        lines += [f"   {'*' if j == 0 else ' '} - {cell}" for j, cell in enumerate(row)]
    return lines + [""]


def _keys(words):
    return ", ".join(f"``{k.replace('.', ':')}``" for k in words) or "—"


def _pool_types_rst():
    """The rows of :mod:`salt_kvm.pool_types`."""
    rows = []
    for ptype in pool_types.TYPES:
        volumes = (
            "image files (" + ", ".join(ptype.volume_formats) + ")" if ptype.file_backed else "raw"
        )
        rows.append([f"``{ptype.name}``", _keys(ptype.needs), volumes, ptype.doc])
    return _list_table(
        "Keys each pool type needs",
        "Checked before anything changes (paths below ``kvm:pools:<pool>``):",
        ["``type``", "required keys", "volumes", "what it is"],
        rows,
    )


def _network_modes_rst():
    """The rows of :mod:`salt_kvm.network_modes`."""
    rows = []
    for mode in network_modes.MODES:
        needs = [k for k, _why in mode.requires]
        needs += [" or ".join(f"``{k}``" for k in keys) for keys, _why in mode.requires_any]
        needs = [n if n.startswith("``") else f"``{n}``" for n in needs]
        refuses = [k for k, _why in mode.forbids]
        if not mode.dev:
            refuses.append("dev")
        rows.append([f"``{mode.name}``", ", ".join(needs) or "—", _keys(refuses), mode.doc])
    return _list_table(
        "What each network mode needs",
        "Checked before anything changes (paths below ``kvm:networks:<network>``):",
        ["``mode``", "required keys", "refused keys", "what it is"],
        rows,
    )


def _bridge_attrs_rst():
    """The rows of :mod:`salt_kvm.bridge_attrs`: how each attribute is persisted."""
    rows = [
        [
            f"``{attr.key}``",
            f"``{attr.nla}``",
            f"``{attr.ifupdown.name}``",
            f"``{attr.networkd.name}``",
            f"``{attr.networkmanager.name}``",
        ]
        for attr in bridge_attrs.ATTRS
    ]
    return _list_table(
        "Bridge attributes in netlink and the persisted files",
        "Each bridge attribute, the netlink attribute it sets, and its name in the files "
        "``persist`` writes (ifupdown, systemd-networkd ``[Bridge]``, NetworkManager "
        "``[bridge]``):",
        ["key", "netlink", "ifupdown", "networkd", "NetworkManager"],
        rows,
    )


#: tables of the kinds, rendered after the section of the pillar key
KIND_TABLES = {
    "bridges": _bridge_attrs_rst,
    "networks": _network_modes_rst,
    "pools": _pool_types_rst,
}


def render(record=schema.PILLAR, root="kvm"):
    """The reference as reStructuredText lines: one section per top-level key."""
    lines = []
    for key in record.fields:
        top = [
            e
            for e in entries(record, root)
            if e.path == f"{root}:{key}" or e.path.startswith(f"{root}:{key}:")
        ]
        title = f"``{root}:{key}``"
        ftype, allowed = describe_type(top[0].field)
        lines += [title, "~" * len(title), "", top[0].description or "(no description)", ""]
        lines += [f":Type: {ftype}", f":Allowed: {allowed}", ""]
        for entry in top[1:]:
            lines += _entry_rst(entry)
        if key in KIND_TABLES:
            lines += KIND_TABLES[key]()
    return lines


class PillarReference(Directive):
    """``.. kvm-pillar-reference::`` -- every key of the ``kvm`` pillar."""

    has_content = False

    def run(self):
        # rebuild the page when the schema (its descriptions) or this extension changes
        env = self.state.document.settings.env
        for module in (schema, bridge_attrs, network_modes, pool_types):
            env.note_dependency(module.__file__)
        for path in sorted(glob.glob(os.path.join(os.path.dirname(schema.__file__), "*.py"))):
            env.note_dependency(path)
        env.note_dependency(__file__)
        container = nodes.section()
        nested_parse_with_titles(
            self.state, StringList(render(), source="salt_kvm/schema"), container
        )
        return container.children


def setup(app):
    app.add_directive("kvm-pillar-reference", PillarReference)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}
