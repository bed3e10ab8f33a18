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


#: What ``edgemix run`` prints for each control surface (``surface.announce``).
SURFACE_LINES = {"osc": r"control surface: osc://127\.0\.0\.1:(\d+)",
                 "web": r"control surface: (http://127\.0\.0\.1:\d+/)"}


def start_surface_run(args, *, cwd, want=("osc", "web"), env=None, timeout_s=600.0):
    """``edgemix run ARGS`` (stdout a pipe, for ``--json``), waiting until it announced
    the surfaces in ``want``: (process, {"osc": port, "web": url}, stderr lines so far).
    Fails the test with the run's stderr when it does not (a cold Numba cache compiles
    first, hence the long default)."""
    import queue
    import re
    import subprocess
    import threading
    import time

    import pytest
    env = dict(env or edgemix_env(), PYTHONUNBUFFERED="1")
    proc = subprocess.Popen(edgemix_exe() + ["run", *map(str, args)], cwd=cwd, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines: queue.Queue = queue.Queue()
    err: list[str] = []

    def read():
        for line in proc.stderr:
            err.append(line)
            lines.put(line)
    threading.Thread(target=read, daemon=True).start()
    found: dict = {}
    deadline = time.monotonic() + timeout_s
    while len(found) < len(want) and time.monotonic() < deadline and proc.poll() is None:
        try:
            line = lines.get(timeout=1.0)
        except queue.Empty:
            continue
        for kind in want:
            m = re.search(SURFACE_LINES[kind], line)
            if m:
                found[kind] = int(m.group(1)) if kind == "osc" else m.group(1)
    if len(found) < len(want):
        proc.kill()
        pytest.fail("edgemix run did not announce its surfaces: " + "".join(err)[-2000:])
    return proc, found, err


def end_run(proc, timeout_s: float = 60.0) -> None:
    """Stop a run with SIGINT (it stops its control process too); kill it if it hangs."""
    import signal
    import subprocess
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
