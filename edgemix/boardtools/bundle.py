"""``edgemix board bundle``: one self-contained, versioned tarball that installs on a board.

Layout of ``edgemix-<version>-<target>.tar.gz`` (one top folder of the same name)::

    install.sh              verifies MANIFEST.sha256 first, then venv + wheels + unit
    MANIFEST.sha256         sha256 of every other file, sorted by path (sha256sum format)
    bundle.json             name, version, target, arch, model files, wheel mode, git commit
    README.txt              what is in it and how to install it
    profile.toml            the target profile (boardtools/data/profiles/<target>.toml, verbatim)
    session.toml            a session config at the profile's settings (edit for the show)
    requirements.txt        runtime requirements for the target (core + its runtime extras)
    apt-packages.txt        Debian packages the runtime needs on the board
    wheels/                 the edgemix wheel built from this tree (+ the target's wheels
                            and a ``BUNDLED`` marker with ``--with-wheels``)
    models/                 the model artifacts for the profile's model format
    systemd/edgemix.service, systemd/edgemix-governor.service, systemd/edgemix-jack.service
    limits.d/99-edgemix-audio.conf
    bin/cpu-governor.sh

Templates come from ``edgemix/boardtools/data/templates`` (package data); ``@KEY@`` markers are filled here from the
profile, except ``@PREFIX@``, ``@USER@`` and ``@CACHE_DIR@``, which the installer fills in.
The tarball is reproducible for a given tree and ``SOURCE_DATE_EPOCH`` (sorted entries,
fixed owner, fixed mtimes).
"""
from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import tomllib
from pathlib import Path

from edgemix.boardtools import profiles
from edgemix.infer import is_weights_file

#: Markers the installer fills in; every other ``@KEY@`` must be filled at bundle time.
INSTALL_TIME_KEYS = ("PREFIX", "USER", "CACHE_DIR")

#: The model artifact each format needs: (glob, predicate on the lower-cased file name).
MODEL_ARTIFACTS = {
    "tflite-int8": ("*.tflite", lambda n: "int8" in n),
    "tflite-fp32": ("*.tflite", lambda n: "int8" not in n),
    "onnx": ("*.onnx", lambda n: "int8" not in n),
    "numba": ("*.npz", is_weights_file),  # not the golden I/O, not the training labels
}


def is_model_file(path: Path, fmt: str) -> bool:
    """True when ``path`` is a model file of format ``fmt`` (:data:`MODEL_ARTIFACTS`)."""
    pattern, keep = MODEL_ARTIFACTS[fmt]
    return path.match(pattern) and keep(path.name.lower())


def model_files_of(models_dir: Path, fmt: str) -> list[Path]:
    """The model files of format ``fmt`` in ``models_dir``, sorted by name."""
    return sorted(p for p in Path(models_dir).glob(MODEL_ARTIFACTS[fmt][0])
                  if is_model_file(p, fmt))


#: What a format is called in the session config's ``[model] backend``.
SESSION_MODEL_BACKEND = {"tflite-int8": "tflite", "tflite-fp32": "tflite", "onnx": "onnx",
                         "numba": "numba"}
#: The runtime extra (pyproject ``optional-dependencies``) and package names each format
#: and each live backend needs on the board.
FORMAT_PACKAGES = {"tflite-int8": ("infer", ("ai-edge-litert",)),
                   "tflite-fp32": ("infer", ("ai-edge-litert",)),
                   "onnx": ("infer", ("onnxruntime",)), "numba": ("infer", ())}
BACKEND_PACKAGES = {"jack": ("live", ("jack-client",)),
                    "portaudio": ("live", ("sounddevice", "rtmixer"))}
#: Debian packages: the runtime list of the repo plus what each live backend loads.
BACKEND_APT = {"jack": ("jackd2", "libjack-jackd2-0"), "portaudio": ()}
#: Files beside the model that always travel with it (card, golden I/O, checksums).
MODEL_COMPANIONS = ("MODEL_CARD.md", "metrics.json", "golden.npz", "SHA256SUMS")

#: pip ``--platform`` tags per target arch: every manylinux level up to the glibc of
#: Debian/Raspberry Pi OS bookworm (2.36).  pip does not widen a single tag to the older
#: ones, and numpy/numba ship ``manylinux_2_27/2_28`` aarch64 wheels only.
_GLIBC_LEVELS = ("2_17", "2_24", "2_26", "2_27", "2_28", "2_31", "2_34", "2_35", "2_36")


def platform_tags(arch: str) -> list[str]:
    """``--platform`` values for pip that match the wheels a bookworm board can run."""
    return [f"manylinux2014_{arch}"] + [f"manylinux_{v}_{arch}" for v in _GLIBC_LEVELS]


def find_source_tree(start=None) -> Path:
    """The edgemix source checkout (the folder with its ``pyproject.toml``)."""
    here = Path(start) if start else Path(__file__).resolve().parents[2]
    py = here / "pyproject.toml"
    if not py.is_file() or 'name = "edgemix"' not in py.read_text(encoding="utf-8"):
        raise ValueError(f"{here}: not an edgemix source tree (no pyproject.toml for edgemix): "
                         "run from a checkout or pass --source DIR")
    return here


def project_metadata(source: Path) -> dict:
    """``[project]`` of the tree's pyproject.toml."""
    return tomllib.loads((source / "pyproject.toml").read_text(encoding="utf-8"))["project"]


def _req_name(req: str) -> str:
    return re.split(r"[\s<>=!~;\[]", req, maxsplit=1)[0].lower().replace("_", "-")


def requirements_for(profile: profiles.Profile, project: dict) -> list[str]:
    """Core dependencies plus the extras this target runs (model runtime, live backend),
    with the version ranges exactly as pyproject.toml states them."""
    reqs = list(project["dependencies"])
    extras = project.get("optional-dependencies", {})
    wanted = []
    for fmt in (profile.model_format, profile.model_fallback):
        if fmt:
            wanted.append(FORMAT_PACKAGES[fmt])
    wanted.append(BACKEND_PACKAGES[profile.backend])
    for extra, names in wanted:
        for name in names:
            match = [r for r in extras.get(extra, []) if _req_name(r) == name]
            if not match:
                raise ValueError(f"pyproject.toml: extra [{extra}] has no {name}: add it there")
            if match[0] not in reqs:
                reqs.append(match[0])
    return reqs


def select_models(profile: profiles.Profile, models_dir: Path) -> list[Path]:
    """The model files this target needs, plus the card, golden I/O and checksums.

    ValueError naming the missing artifact and the fix when the profile's model format (or
    its fallback) has nothing in ``models_dir``; when ``SHA256SUMS`` is there, every chosen
    artifact must match it (a stale or half-rebuilt ``models/`` is refused).
    """
    models_dir = Path(models_dir)
    if not models_dir.is_dir():
        raise ValueError(f"{models_dir}: no models folder: build the models with "
                         "`python -m export.build_models` or pass --models DIR")
    chosen: list[Path] = []
    for fmt in (profile.model_format, profile.model_fallback):
        if not fmt:
            continue
        pattern = MODEL_ARTIFACTS[fmt][0]
        found = model_files_of(models_dir, fmt)
        if not found:
            role = "model.format" if fmt == profile.model_format else "model.fallback"
            raise ValueError(
                f"{models_dir}: no {fmt} model ({pattern}) for target {profile.name} "
                f"({role}): build it with `python -m export.build_models`, or choose another "
                f"{role} in the profile")
        chosen += [p for p in found if p not in chosen]
    chosen += [models_dir / n for n in MODEL_COMPANIONS if (models_dir / n).is_file()]
    sums = models_dir / "SHA256SUMS"
    if sums.is_file():
        listed = _listed_sums(sums)
        for p in chosen:
            if p.name in listed and sha256_file(p) != listed[p.name]:
                raise ValueError(f"{p}: does not match {sums.name}: the models folder is stale "
                                 "or half rebuilt; rerun `python -m export.build_models`")
    return chosen


def _listed_sums(sums: Path) -> dict[str, str]:
    """``{file name: hex digest}`` of a ``sha256sum``-format file."""
    listed = {}
    for line in sums.read_text(encoding="utf-8").splitlines():
        parts = line.split()
        if len(parts) == 2:
            listed[parts[1].lstrip("*").split("/")[-1]] = parts[0].lower()
    return listed


def _write_model_sums(sums: Path, models_out: Path) -> None:
    """The bundle's ``models/SHA256SUMS``: the model build's own lines for the files this
    bundle ships (checked by :func:`select_models`), so ``sha256sum -c SHA256SUMS`` passes
    inside ``models/`` on the board; files the build never summed are not vouched for."""
    listed = _listed_sums(sums)
    shipped = sorted(p.name for p in models_out.iterdir() if p.name in listed)
    (models_out / "SHA256SUMS").write_text(
        "".join(f"{listed[n]}  {n}\n" for n in shipped), encoding="ascii")


def sha256_file(path) -> str:
    """Hex SHA-256 of a file (streamed by the standard library)."""
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def write_manifest(root: Path) -> Path:
    """``MANIFEST.sha256``: every regular file under ``root`` but itself, sorted by path."""
    lines = []
    for p in sorted(root.rglob("*"), key=lambda q: q.relative_to(root).as_posix()):
        rel = p.relative_to(root).as_posix()
        if p.is_symlink() or rel == "MANIFEST.sha256" or p.is_dir():
            continue
        if not re.fullmatch(r"[A-Za-z0-9._+/-]+", rel):
            raise ValueError(f"{rel}: bundle paths may only use letters, digits and ._+-/")
        lines.append(f"{sha256_file(p)}  {rel}\n")
    out = root / "MANIFEST.sha256"
    out.write_text("".join(lines), encoding="ascii")
    return out


def render_template(text: str, values: dict[str, str], name: str = "template") -> str:
    """Fill ``@KEY@`` markers; every marker but the installer's must have a value."""
    def sub(m):
        key = m.group(1)
        if key in values:
            return str(values[key])
        if key in INSTALL_TIME_KEYS:
            return m.group(0)
        raise ValueError(f"{name}: no value for @{key}@")
    return re.sub(r"@([A-Z_]+)@", sub, text)


def _template(name: str) -> str:
    return (profiles.data_dir() / "templates" / name).read_text(encoding="utf-8")


def template_values(profile: profiles.Profile, version: str) -> dict[str, str]:
    cores = sorted(set(profile.audio_cores) | set(profile.control_cores))
    return {
        "NAME": "edgemix", "VERSION": version, "TARGET": profile.name, "ARCH": profile.arch,
        "AUDIO_RTPRIO": str(profile.audio_rtprio),
        "MEMLOCK": "infinity" if profile.memlock_mib is None else f"{profile.memlock_mib}M",
        "MEMLOCK_LIMITS": ("unlimited" if profile.memlock_mib is None
                           else str(profile.memlock_mib * 1024)),
        "GOVERNOR": profile.governor or "performance",
        "CPU_AFFINITY": ("CPUAffinity=" + " ".join(map(str, cores))) if cores else
                        "# CPUAffinity: any CPU (the profile pins no cores)",
        "AUDIO_AFTER": ("edgemix-jack.service" if profile.backend == "jack"
                        else "pipewire.service"),
        "SAMPLE_RATE_HZ": str(profile.sample_rate_hz), "BLOCK_SIZE": str(profile.block_size),
        "PERIODS": str(profile.periods),
        # JACK's own thread above edgemix's (its process callback runs in JACK's thread).
        "JACK_RTPRIO": str(min(profile.audio_rtprio + 5, 95)),
    }


def session_toml(profile: profiles.Profile, model_file: str | None) -> str:
    """A session config at the profile's settings, in edgemix.session's format."""
    lines = [
        f"# edgemix session for target {profile.name}: {profile.description}.",
        "# Name the channels, set their roles and lock what must not move (see edgemix.session).",
        "[session]", f'name = "{profile.name} live"',
        f"sample_rate_hz = {profile.sample_rate_hz}", f"block_size = {profile.block_size}", "",
        "[backend]", f'kind = "{profile.backend}"',
    ]
    if profile.backend == "jack":
        lines += ['client_name = "edgemix"', "auto_connect = true"]
    else:
        lines += [f"ring_blocks = {profile.periods}"]
    lines += ["", "[model]"]
    if model_file:
        lines += ['policy = "model"', f'path = "models/{model_file}"',
                  f'backend = "{SESSION_MODEL_BACKEND[profile.model_format]}"']
    else:
        lines += ['policy = "rules"']
    lines += [f"hop_ms = {profile.hop_ms:g}", ""]
    for i in range(profile.n_channels):
        lines += ["[[channels]]", f'name = "ch{i + 1}"', f"input = {i + 1}", 'role = "other"',
                  "automation = 1.0", ""]
    for i in range(profile.n_aux):
        kind = "reverb" if i == 0 else "monitor"
        lines += ["[[buses]]", f'name = "{kind if i < 2 else f"monitor{i}"}"',
                  f'kind = "{kind}"', ""]
    return "\n".join(lines)


def build_wheel(source: Path, dest: Path) -> Path:
    """``pip wheel --no-deps`` of the tree, built from a clean copy (the tree is untouched)."""
    with tempfile.TemporaryDirectory(prefix="edgemix-wheel-") as tmp:
        src = Path(tmp) / "src"
        ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info", "build", "dist")
        src.mkdir()
        project = project_metadata(source)
        readme = project.get("readme")
        needed = ["pyproject.toml"] + ([readme] if isinstance(readme, str) else [])
        for name in needed:
            if not (source / name).is_file():
                raise ValueError(f"{source / name}: missing, and pyproject.toml needs it to "
                                 "build the wheel: restore it")
            shutil.copy2(source / name, src / name)
        # the runtime package only: board data is its package data, and the host-side
        # toolchain (export/) never ships to a board
        shutil.copytree(source / "edgemix", src / "edgemix", ignore=ignore)
        cmd = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
               "--disable-pip-version-check", "-q", "-w", str(dest), str(src)]
        r = subprocess.run(cmd, capture_output=True, text=True)
        if r.returncode != 0:
            tail = (r.stderr or r.stdout).strip().splitlines()[-1:] or ["(no output)"]
            raise RuntimeError(f"building the edgemix wheel failed: {tail[0]}")
    wheels = sorted(dest.glob("edgemix-*.whl"))
    if len(wheels) != 1:
        raise RuntimeError(f"expected one edgemix wheel in {dest}, found {len(wheels)}")
    return wheels[0]


def download_wheels(reqs: list[str], arch: str, dest: Path, python_version: str = "3.11",
                    extra_args: tuple[str, ...] = ()) -> list[Path]:
    """``pip download --only-binary=:all:`` of ``reqs`` for the target's platform."""
    before = set(dest.glob("*.whl"))
    cmd = [sys.executable, "-m", "pip", "download", "--disable-pip-version-check", "-q",
           "--only-binary=:all:", "--implementation", "cp", "--python-version", python_version,
           "-d", str(dest)]
    for tag in platform_tags(arch):
        cmd += ["--platform", tag]
    r = subprocess.run(cmd + list(extra_args) + list(reqs), capture_output=True, text=True)
    if r.returncode != 0:
        err = [ln for ln in (r.stderr or "").splitlines() if ln.startswith("ERROR")]
        raise RuntimeError("downloading the target's wheels failed: "
                           + (err[0] if err else "pip download exited "
                              f"{r.returncode}") + " (a package with no wheel for "
                           f"{arch} must be built on the board: bundle without --with-wheels)")
    return sorted(set(dest.glob("*.whl")) - before)


def _git_commit(source: Path) -> str:
    try:
        r = subprocess.run(["git", "-C", str(source), "rev-parse", "HEAD"],
                           capture_output=True, text=True, timeout=10)
        return r.stdout.strip() if r.returncode == 0 else ""
    except (OSError, subprocess.TimeoutExpired):
        return ""


def _readme(profile, version, model_files, bundled) -> str:
    return f"""edgemix {version} for {profile.name} ({profile.arch})
{profile.description}

Install (as root, on the board):
    tar xzf edgemix-{version}-{profile.name}.tar.gz
    cd edgemix-{version}-{profile.name}
    sudo ./install.sh            # verifies MANIFEST.sha256 first, then installs
    ./install.sh --verify-only   # only check the files

What it sets up: a venv in /opt/edgemix/venv ({'offline, from the bundled wheels' if bundled
else 'online, from PyPI'}), the profile and session config, the model
({', '.join(model_files) or 'none'}), a systemd unit running `edgemix run` at SCHED_FIFO
priority {profile.audio_rtprio} with locked memory, the CPU governor service, the
limits.d file for the audio group, and a warm Numba cache in /var/cache/edgemix/numba.

Audio: {profile.sample_rate_hz} Hz, {profile.block_size} frames x {profile.periods} periods
({profile.deadline_ms:.2f} ms per block), {profile.backend}, {profile.n_channels} channels.
Preflight: /opt/edgemix/venv/bin/edgemix board check --target /opt/edgemix/profile.toml
"""


def build_bundle(target, out_dir, *, models_dir=None, source=None, with_wheels=False,
                 python_version: str = "3.11", pip_args: tuple[str, ...] = (),
                 wheel=None) -> Path:
    """Build ``out_dir/edgemix-<version>-<target>.tar.gz`` (and its ``.sha256``).

    ``target`` is a profile name or path.  ``models_dir`` defaults to the tree's
    ``models/``.  With ``with_wheels`` the target's binary wheels are downloaded (pip
    ``--platform``) so the board installs offline.  ``wheel``: an edgemix wheel built
    already (e.g. once by CI for every target) instead of building one from the tree.
    Returns the tarball's path.
    """
    profile = profiles.load(target)
    source = find_source_tree(source)
    project = project_metadata(source)
    version = project["version"]
    models_dir = Path(models_dir) if models_dir else source / "models"
    model_files = select_models(profile, models_dir)
    reqs = requirements_for(profile, project)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    name = f"edgemix-{version}-{profile.name}"

    with tempfile.TemporaryDirectory(prefix="edgemix-bundle-") as tmp:
        root = Path(tmp) / name
        for sub in ("wheels", "models", "systemd", "limits.d", "bin"):
            (root / sub).mkdir(parents=True)
        if wheel is None:
            wheel = build_wheel(source, root / "wheels")
        else:
            wheel = Path(wheel)
            if not re.fullmatch(rf"edgemix-{re.escape(version)}-py3-none-any\.whl", wheel.name):
                raise ValueError(f"{wheel}: not an edgemix {version} wheel "
                                 f"(edgemix-{version}-py3-none-any.whl): rebuild it")
            wheel = Path(shutil.copy2(wheel, root / "wheels" / wheel.name))
        if with_wheels:
            download_wheels(reqs, profile.arch, root / "wheels", python_version, pip_args)
            (root / "wheels" / "BUNDLED").write_text(
                f"wheels for {profile.arch}, CPython {python_version}\n", encoding="ascii")
        for p in model_files:
            if p.name != "SHA256SUMS":
                shutil.copy2(p, root / "models" / p.name)
        if any(p.name == "SHA256SUMS" for p in model_files):
            _write_model_sums(models_dir / "SHA256SUMS", root / "models")
        primary = next((p.name for p in model_files
                        if is_model_file(p, profile.model_format)), None)

        shutil.copyfile(profile.source, root / "profile.toml")
        (root / "session.toml").write_text(session_toml(profile, primary), encoding="utf-8")
        (root / "requirements.txt").write_text("\n".join(reqs) + "\n", encoding="utf-8")
        apt = _apt_runtime(source) + list(BACKEND_APT[profile.backend]) + ["python3-venv"]
        (root / "apt-packages.txt").write_text("\n".join(dict.fromkeys(apt)) + "\n",
                                               encoding="utf-8")

        values = template_values(profile, version)
        files = {"install.sh": "install.sh", "systemd/edgemix.service": "edgemix.service",
                 "limits.d/99-edgemix-audio.conf": "99-edgemix-audio.conf",
                 "bin/cpu-governor.sh": "cpu-governor.sh"}
        if profile.governor:
            files["systemd/edgemix-governor.service"] = "edgemix-governor.service"
        if profile.backend == "jack":
            files["systemd/edgemix-jack.service"] = "edgemix-jack.service"
        for dest, tmpl in files.items():
            (root / dest).write_text(render_template(_template(tmpl), values, tmpl),
                                     encoding="utf-8")
        for exe in ("install.sh", "bin/cpu-governor.sh"):
            (root / exe).chmod(0o755)
        (root / "README.txt").write_text(
            _readme(profile, version, [p.name for p in model_files], with_wheels),
            encoding="utf-8")

        epoch = int(os.environ.get("SOURCE_DATE_EPOCH", time.time()))
        info = {
            "name": "edgemix", "version": version, "target": profile.name,
            "arch": profile.arch, "python": f">={python_version}",
            "wheel": wheel.name, "wheels_bundled": bool(with_wheels),
            "model_format": profile.model_format, "model_fallback": profile.model_fallback,
            "model_files": [p.name for p in model_files],
            "sample_rate_hz": profile.sample_rate_hz, "block_size": profile.block_size,
            "periods": profile.periods, "backend": profile.backend,
            "git_commit": _git_commit(source),
            "created_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch)),
        }
        (root / "bundle.json").write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
        write_manifest(root)

        tarball = out_dir / f"{name}.tar.gz"
        _write_tarball(root, tarball, epoch)
    (out_dir / f"{name}.tar.gz.sha256").write_text(
        f"{sha256_file(tarball)}  {tarball.name}\n", encoding="ascii")
    return tarball


def _apt_runtime(source: Path) -> list[str]:
    f = source / "scripts" / "apt-runtime.txt"
    if not f.is_file():
        return []
    words = []
    for line in f.read_text(encoding="utf-8").splitlines():
        words += line.split("#", 1)[0].split()
    return words


def _write_tarball(root: Path, tarball: Path, epoch: int) -> None:
    """A reproducible .tar.gz: sorted entries, owner root, one mtime, gzip without a name."""
    def norm(ti: tarfile.TarInfo) -> tarfile.TarInfo:
        ti.uid = ti.gid = 0
        ti.uname = ti.gname = "root"
        ti.mtime = epoch
        ti.mode = 0o755 if (ti.isdir() or ti.mode & 0o100) else 0o644
        return ti
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        tar.add(root, arcname=root.name, recursive=False, filter=norm)
        for p in sorted(root.rglob("*"), key=lambda q: q.relative_to(root).as_posix()):
            tar.add(p, arcname=f"{root.name}/{p.relative_to(root).as_posix()}",
                    recursive=False, filter=norm)
    with open(tarball, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=epoch,
                                                   filename="") as gz:
        gz.write(buf.getvalue())
