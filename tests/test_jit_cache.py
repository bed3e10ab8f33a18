"""The Numba cache folder is keyed by every source that can change a compiled kernel
(``edgemix/dsp/_jit.py``): a constant a kernel freezes, in whatever module it lives, starts
a fresh cache; an edit the kernels cannot see (the CLI) keeps it."""
from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from edgemix.dsp import _jit

PACKAGE = Path(_jit.__file__).resolve().parents[1]


@pytest.fixture()
def package_copy(tmp_path):
    dst = tmp_path / "edgemix"
    shutil.copytree(PACKAGE, dst, ignore=shutil.ignore_patterns("__pycache__"))
    return dst


def _edit(path: Path, pattern: str, repl: str) -> None:
    text = path.read_text()
    new, n = re.subn(pattern, repl, text, count=1, flags=re.M)
    assert n == 1, f"{path}: {pattern!r} not found"
    path.write_text(new)


def test_a_frozen_constant_outside_the_kernel_modules_invalidates_the_cache(package_copy):
    """``Z_LIMIT`` lives in infer/weights.py (no kernel there); the Numba forward pass
    freezes it.  Changing it must change the key."""
    weights = package_copy / "infer" / "weights.py"
    assert weights in _jit.kernel_sources(package_copy)
    before = _jit._source_key(package_copy)
    _edit(weights, r"^Z_LIMIT = .*$", "Z_LIMIT = 2.0")
    assert _jit._source_key(package_copy) != before


def test_a_schema_or_kernel_edit_invalidates_and_a_cli_edit_does_not(package_copy):
    before = _jit._source_key(package_copy)
    _edit(package_copy / "cli" / "run.py", r"^", "# a comment the kernels never see\n")
    assert _jit._source_key(package_copy) == before
    _edit(package_copy / "dsp" / "strip.py", r"^TICK = \d+", "TICK = 32")
    after_tick = _jit._source_key(package_copy)
    assert after_tick != before
    _edit(package_copy / "params.py", r"^", "# the schema moved\n")
    assert _jit._source_key(package_copy) != after_tick


def test_the_running_package_uses_its_own_key():
    assert Path(_jit.numba.config.CACHE_DIR).name == _jit._source_key()
