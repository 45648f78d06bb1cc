"""Sphinx configuration for salt-kvm's docs (``make docs``)."""

import importlib.util
import os
import sys

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "docs", "_ext"))


def _load(alias, relpath):
    """Import a loader module file under a unique name so autodoc can document it."""
    path = os.path.join(ROOT, relpath)
    if not os.path.exists(path):
        return
    spec = importlib.util.spec_from_file_location(alias, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[alias] = module
    spec.loader.exec_module(module)


_load("kvm_execution_module", "_modules/kvm.py")
_load("kvm_state_module", "_states/kvm.py")
_load("kvm_grains_module", "_grains/kvm.py")
_load("kvm_runner_module", "_runners/kvm.py")

project = "salt-kvm"
author = "salt-kvm developers"
copyright = "2026, salt-kvm developers"  # pylint: disable=redefined-builtin
release = "0.1.0"
extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.viewcode",
    "kvm_pillar_reference",
    "kvm_reference_names",
]
autodoc_default_options = {"members": True, "undoc-members": False}
autodoc_member_order = "bysource"
exclude_patterns = ["_build"]
# furo: a wide content column, so salt command lines and state output fit
html_theme = "furo"
html_title = "salt-kvm"
html_static_path = ["_static"]
html_css_files = ["kvm.css"]
# the table of contents shows functions as "kvm.host_info", as the entries do
toc_object_entries_show_parents = "hide"
