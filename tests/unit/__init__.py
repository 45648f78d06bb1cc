"""Unit tests: no daemon, no root, no network (a package, so their module names can
repeat those of tests/functional and tests/integration)."""
