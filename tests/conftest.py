"""Shared test setup: Numba's cache in the repo so compile time is paid once per clone."""
import os
import pathlib

os.environ.setdefault("NUMBA_CACHE_DIR",
                      str(pathlib.Path(__file__).resolve().parents[1] / ".numba_cache"))
