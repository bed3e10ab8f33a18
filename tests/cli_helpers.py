"""The real ``edgemix`` entry point for tests: the console script pyproject.toml installs
(``[project.scripts] edgemix = "edgemix.cli:main"``), run as a user runs it."""
from __future__ import annotations

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def edgemix_exe() -> list[str]:
    """``[path of the edgemix script]`` beside this interpreter (what `pip install` put
    there); its code is this checkout's (:func:`edgemix_env`)."""
    exe = Path(sys.executable).parent / "edgemix"
    assert exe.is_file(), f"{exe}: no edgemix script: pip install -e . (scripts/setup.sh)"
    return [str(exe)]


def edgemix_env(**extra) -> dict:
    """The environment for it: this checkout first on the path, the tests' Numba cache."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT)] + [p for p in
                                         env.get("PYTHONPATH", "").split(os.pathsep) if p])
    env.setdefault("NUMBA_CACHE_DIR", str(ROOT / ".numba_cache"))
    env.update(extra)
    return env
