"""Dependencies point one way: ``export/`` (the host-side model toolchain) is a client of
``edgemix``, never the reverse (``docs/architecture.md``).  Read from the source, not by
importing it: an import inside a function body counts as much as one at the top."""
from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HOST_ONLY = ("export",)


def _imports(path: Path, base: Path):
    """``(line, module)`` of every import in a file (relative ones resolved from ``base``)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    pkg = path.relative_to(base).with_suffix("").parts[:-1]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                yield node.lineno, a.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = ".".join(pkg[:len(pkg) - node.level + 1])
                yield node.lineno, f"{base}.{node.module}" if node.module else base
            else:
                yield node.lineno, node.module
        elif (isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(
                node.func, "id", None)) == "import_module" and node.args
              and isinstance(node.args[0], ast.Constant)):
            yield node.lineno, node.args[0].value


def host_imports(base: Path = ROOT) -> list[str]:
    """Every import of a host-only package by a module of ``base/edgemix``."""
    bad = []
    for path in sorted((base / "edgemix").rglob("*.py")):
        for line, mod in _imports(path, base):
            if str(mod).split(".")[0] in HOST_ONLY:
                bad.append(f"{path.relative_to(base)}:{line}: imports {mod}")
    return bad


def test_edgemix_never_imports_export():
    bad = host_imports()
    assert not bad, "edgemix must not import the host toolchain:\n" + "\n".join(bad)


def test_the_check_sees_every_kind_of_import(tmp_path):
    """The walker finds top-level, nested, relative and importlib imports."""
    pkg = tmp_path / "edgemix" / "sub"
    pkg.mkdir(parents=True)
    (pkg / "a.py").write_text("import export.synth\n")
    (pkg / "b.py").write_text("def f():\n    from export import verify\n")
    (pkg / "c.py").write_text("import importlib\nimportlib.import_module('export.dataset')\n")
    (pkg / "d.py").write_text("from . import e\nimport numpy\nfrom edgemix import params\n")
    bad = host_imports(tmp_path)
    assert [b.split(":")[0] for b in bad] == ["edgemix/sub/a.py", "edgemix/sub/b.py",
                                              "edgemix/sub/c.py"]
