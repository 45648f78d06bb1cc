"""One class both parses and builds libvirt XML (the virt-manager way).

A model subclass declares properties mapped to simple paths::

    class Pool(XmlModel):
        ROOT = "pool"
        name = Text("name")
        type = Attr(".", "type")
        target_path = Text("target/path")
        capacity = Text("capacity", int)

``Pool(xml_string)`` parses current state from libvirt; ``Pool()`` then setting
properties builds the desired XML; ``to_xml()`` serialises. Paths are ``/``
separated element names, optionally with one ``[@attr='value']`` predicate per
step; setting a property creates the elements it needs. Never format XML with
strings: build it through these properties or lxml directly.
"""

from __future__ import annotations

import re
from typing import Any, Callable, ClassVar, Optional, Union

from lxml import etree

_STEP = re.compile(
    r"^(?P<tag>[A-Za-z_][\w.-]*)(?:\[@(?P<attr>[\w:-]+)=['\"](?P<value>[^'\"]*)['\"]\])?$"
)

#: a parser that never resolves entities or reaches the network
PARSER = etree.XMLParser(resolve_entities=False, no_network=True, remove_blank_text=True)


def parse(xml: Union[str, bytes]) -> Any:
    """The root element of ``xml`` (text or bytes), parsed with :data:`PARSER`."""
    return etree.fromstring(xml.encode() if isinstance(xml, str) else xml, PARSER)


def find_or_create(root: Any, path: str) -> Any:
    """The element at ``path`` under ``root``, created (with predicates) when missing."""
    node = root
    if path in (".", ""):
        return node
    for step in path.split("/"):
        match = _STEP.match(step)
        if not match:
            raise ValueError(f"unsupported path step {step!r}")
        found = node.find(step)
        if found is None:
            found = etree.SubElement(node, match.group("tag"))
            if match.group("attr"):
                found.set(match.group("attr"), match.group("value"))
        node = found
    return node


class _Property:
    def __init__(self, path: str, conv: Callable[[Any], Any] = str, *, default: Any = None) -> None:
        self.path, self.conv, self.default = path, conv, default
        self.name: Optional[str] = None

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    def _convert(self, raw: Any) -> Any:
        if raw is None:
            return self.default
        try:
            return self.conv(raw)
        except (TypeError, ValueError):
            return self.default


class Text(_Property):
    """The text of the element at ``path``."""

    def __get__(self, obj: Any, objtype: Optional[type] = None) -> Any:
        if obj is None:
            return self
        node = obj.root if self.path == "." else obj.root.find(self.path)
        return self._convert(node.text.strip() if node is not None and node.text else None)

    def __set__(self, obj: Any, value: Any) -> None:
        if value is None:
            node = obj.root.find(self.path)
            if node is not None:
                node.getparent().remove(node)
            return
        find_or_create(obj.root, self.path).text = str(value)


class Attr(_Property):
    """The attribute ``attr`` of the element at ``path`` (``.`` is the root)."""

    def __init__(
        self, path: str, attr: str, *, conv: Callable[[Any], Any] = str, default: Any = None
    ) -> None:
        super().__init__(path, conv, default=default)
        self.attr = attr

    def __get__(self, obj: Any, objtype: Optional[type] = None) -> Any:
        if obj is None:
            return self
        node = obj.root if self.path == "." else obj.root.find(self.path)
        return self._convert(node.get(self.attr) if node is not None else None)

    def __set__(self, obj: Any, value: Any) -> None:
        if value is None:
            node = obj.root if self.path == "." else obj.root.find(self.path)
            if node is not None and self.attr in node.attrib:
                del node.attrib[self.attr]
            return
        if isinstance(value, bool):
            value = "yes" if value else "no"
        find_or_create(obj.root, self.path).set(self.attr, str(value))


def yes_no(raw: Optional[str]) -> bool:
    """libvirt's spellings of true (``yes``, ``on``, ``1``, ``true``)."""
    return raw in ("yes", "on", "1", "true")


class XmlModel:
    """One libvirt XML document: parsed from text, or built from nothing."""

    #: the root element's tag (``None``: any root)
    ROOT: ClassVar[Optional[str]] = None

    def __init__(self, xml: Any = None) -> None:
        if xml is None:
            self.root = etree.Element(self.ROOT)
        elif isinstance(xml, etree._Element):  # pylint: disable=protected-access
            self.root = xml
        else:
            self.root = parse(xml)
        if self.ROOT and self.root.tag != self.ROOT:
            raise ValueError(f"expected <{self.ROOT}>, got <{self.root.tag}>")

    def to_xml(self, pretty: bool = True) -> str:
        return etree.tostring(self.root, encoding="unicode", pretty_print=pretty)

    def find(self, path: str) -> Any:
        return self.root.find(path)

    def findall(self, path: str) -> list[Any]:
        return self.root.findall(path)

    def sub(self, path: str) -> Any:
        return find_or_create(self.root, path)


def xml_diff(
    old: Optional[str], new: Optional[str], *, fromname: str = "current", toname: str = "declared"
) -> str:
    """A unified diff of two XML documents, normalised (pretty-printed, same parser)."""
    import difflib  # pylint: disable=import-outside-toplevel

    def norm(xml: Optional[str]) -> list[str]:
        if not xml:
            return []
        return etree.tostring(parse(xml), encoding="unicode", pretty_print=True).splitlines()

    return "\n".join(difflib.unified_diff(norm(old), norm(new), fromname, toname, lineterm=""))
