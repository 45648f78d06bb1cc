"""Every error message salt-kvm can show is explained in docs/troubleshooting.rst.

How messages are found (with :mod:`ast`, in ``salt_kvm/**.py`` and the loader
modules ``_modules``, ``_states``, ``_runners``, ``_grains``, ``_output``):

* ``raise C(MSG, ...)`` where ``C`` is an exception class of
  ``salt_kvm/errors.py`` or one of Salt's (``CommandExecutionError``,
  ``SaltInvocationError``, ...); for ``InvalidInput(path, MSG)`` the message is
  the second argument;
* ``errors.add(path, MSG)`` in ``salt_kvm/schema/*.py`` (the pillar schema's messages);
* ``raise ValueError(MSG)`` in ``salt_kvm/units.py`` (sizes and durations; the
  schema shows these as they are);
* ``return False, MSG`` in a ``__virtual__`` / ``virtual`` function (why ``kvm``
  is not loaded).

A message template is the sequence of constant parts of ``MSG``: the string
literal itself, the constant parts of an f-string, of ``"..." % x``, of
``"...".format()`` and of ``+`` concatenations; both branches of ``a if c else b``
are separate templates. A part counts when it has at least three letters or
digits; the parts in between (names, paths, libvirt's own text) are
placeholders.

The matching rule: a template is covered when its parts appear in
troubleshooting.rst in the same order, each separated from the next by at
most 80 characters of anything (the placeholder, written in capitals on the
page: ``volume 'NAME' does not exist in pool 'POOL'``). The page's text is
compared with ``````, ``\\`` and line breaks removed and runs of white space
made one space. Templates without any part of three letters (``f"{what}:
{cause}"``, ``str(exc)``) pass another message through and are exempt: the page
explains those in its section on libvirt's and the kernel's own messages.

So a new ``raise KvmError("...")`` without an entry on the page fails here,
naming the file and line and the text to document.
"""

import ast
import glob
import os
import re

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PAGE = os.path.join(ROOT, "docs", "troubleshooting.rst")
SALT_ERRORS = {
    "CommandExecutionError",
    "SaltInvocationError",
    "SaltRenderError",
    "CommandNotFoundError",
    "SaltException",
}
GAP = 80


def _read(path):
    with open(path, encoding="utf-8") as fh:
        return fh.read()


def _error_classes():
    tree = ast.parse(_read(os.path.join(ROOT, "salt_kvm", "errors.py")))
    return {node.name for node in tree.body if isinstance(node, ast.ClassDef)} | SALT_ERRORS


def _source_files():
    files = sorted(glob.glob(os.path.join(ROOT, "salt_kvm", "**", "*.py"), recursive=True))
    for sub in ("_modules", "_states", "_runners", "_grains", "_output"):
        files += sorted(glob.glob(os.path.join(ROOT, sub, "*.py")))
    return files


_PERCENT = re.compile(r"%(\([^)]*\))?[-#0 +]*\d*(\.\d+)?[sdrifx]")
_BRACES = re.compile(r"\{[^{}]*\}")


def _templates(node):
    """The templates (lists of constant parts) a message expression can produce."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return [[node.value]]
    if isinstance(node, ast.JoinedStr):
        return [
            [
                v.value
                for v in node.values
                if isinstance(v, ast.Constant) and isinstance(v.value, str)
            ]
        ]
    if isinstance(node, ast.IfExp):
        return _templates(node.body) + _templates(node.orelse)
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        return [
            a + b for a in _templates(node.left) or [[]] for b in _templates(node.right) or [[]]
        ]
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Mod):
        return [[p for part in t for p in _PERCENT.split(part) if p] for t in _templates(node.left)]
    if (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr == "format"
    ):
        return [[p for part in t for p in _BRACES.split(part)] for t in _templates(node.func.value)]
    return []


def _name(func):
    if isinstance(func, ast.Name):
        return func.id
    if isinstance(func, ast.Attribute):
        return func.attr
    return None


def _message_nodes(path, tree, classes):
    rel = os.path.relpath(path, ROOT)
    for func in [
        n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))
    ]:
        if func.name in ("__virtual__", "virtual"):
            for node in ast.walk(func):
                if (
                    isinstance(node, ast.Return)
                    and isinstance(node.value, ast.Tuple)
                    and len(node.value.elts) == 2
                ):
                    first = node.value.elts[0]
                    if isinstance(first, ast.Constant) and first.value is False:
                        yield node.lineno, node.value.elts[1]
    for node in ast.walk(tree):
        if isinstance(node, ast.Raise) and isinstance(node.exc, ast.Call):
            name = _name(node.exc.func)
            if name == "ValueError" and rel == os.path.join("salt_kvm", "units.py"):
                pass
            elif name not in classes:
                continue
            index = 1 if name == "InvalidInput" else 0
            keyword = {k.arg: k.value for k in node.exc.keywords}
            if len(node.exc.args) > index:
                yield node.lineno, node.exc.args[index]
            elif "message" in keyword:
                yield node.lineno, keyword["message"]
        elif (
            rel.startswith(os.path.join("salt_kvm", "schema", ""))
            and isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "add"
            and len(node.args) == 2
        ):
            yield node.lineno, node.args[1]


def _significant(parts):
    out = []
    for part in parts:
        text = re.sub(r"\s+", " ", part).strip()
        if len(re.findall(r"[A-Za-z0-9]", text)) >= 3:
            out.append(text)
    return out


def messages():
    """``[(file:line, [parts])]`` for every message template in the code."""
    classes = _error_classes()
    found = []
    for path in _source_files():
        tree = ast.parse(_read(path), filename=path)
        for lineno, node in _message_nodes(path, tree, classes):
            for parts in _templates(node):
                found.append((f"{os.path.relpath(path, ROOT)}:{lineno}", _significant(parts)))
    return found


def page_text():
    text = _read(PAGE)
    text = text.replace("``", "").replace("\\", "")
    return re.sub(r"\s+", " ", text)


def covered(parts, text):
    pattern = f".{{0,{GAP}}}?".join(
        r"\s*".join(re.escape(w) for w in part.split(" ")) for part in parts
    )
    return re.search(pattern, text) is not None


def test_messages_are_found():
    found = messages()
    assert len(found) > 150, "the extraction finds far fewer messages than the code has"
    texts = [" ... ".join(parts) for _, parts in found]
    assert any("is not a size" in t for t in texts)
    assert any("unknown key" in t for t in texts)
    assert any("cannot connect to libvirt at" in t for t in texts)
    assert any("install salt-kvm with pip / salt-pip" in t for t in texts)


def test_the_matching_rule():
    assert covered(
        ["volume '", "' does not exist in pool '"],
        "x volume 'NAME' does not exist in pool 'POOL' y",
    )
    assert not covered(
        ["volume '", "' does not exist in pool '"],
        "volume 'NAME' was created; it does not exist in pool 'POOL'" + " " * GAP,
    )
    assert not covered(["cannot delete"], "cannot remove")


def test_every_message_is_in_the_troubleshooting_page():
    text = page_text()
    missing = sorted(
        {
            f"{where}: {' ... '.join(parts)}"
            for where, parts in messages()
            if parts and not covered(parts, text)
        }
    )
    assert not missing, (
        f"{len(missing)} error message(s) not explained in docs/troubleshooting.rst "
        "(write each with its placeholders in capitals, then what it means, why, and the fix):\n  "
        + "\n  ".join(missing)
    )


@pytest.mark.parametrize("toctree", ["docs/index.rst"])
def test_the_page_is_in_the_toctree(toctree):
    assert re.search(r"^\s+troubleshooting\s*$", _read(os.path.join(ROOT, toctree)), re.MULTILINE)
