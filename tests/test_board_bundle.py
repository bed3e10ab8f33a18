"""The rpi4 bundle: builds on x86, its manifest verifies, any change makes the installer
refuse before it touches anything, and its systemd units pass ``systemd-analyze verify``."""
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tomllib
import zipfile
from pathlib import Path

import pytest
from click.testing import CliRunner

from cli_helpers import edgemix_env, edgemix_exe
from edgemix.cli import cli
from edgemix.boardtools import bundle as B
from edgemix.boardtools import profiles

ROOT = Path(__file__).resolve().parents[1]
VERSION = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]


def _models_for(target: str, tmp: Path) -> Path:
    """The real models/ when it holds what the target needs, else a clearly named fixture
    folder in a temp dir (the bundler copies models, it never parses them)."""
    prof = profiles.load(target)
    try:
        B.select_models(prof, ROOT / "models")
        return ROOT / "models"
    except ValueError:
        pass
    d = tmp / "models-fixture"
    d.mkdir()
    (d / "fixture-student-int8.tflite").write_bytes(b"bundle-test fixture, not a model\n")
    (d / "fixture-student.npz").write_bytes(b"bundle-test fixture, not a model\n")
    (d / "MODEL_CARD.md").write_text("# fixture card for the bundle test\n")
    return d


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("bundle")
    models = _models_for("rpi4", tmp)
    mp = pytest.MonkeyPatch()
    mp.setenv("SOURCE_DATE_EPOCH", "1700000000")
    tarball = B.build_bundle("rpi4", tmp / "dist", models_dir=models)
    x = tmp / "x"
    with tarfile.open(tarball) as t:
        t.extractall(x, filter="data")
    yield tarball, x / f"edgemix-{VERSION}-rpi4", models
    mp.undo()


def _install(root: Path, *args, cwd=None):
    return subprocess.run(["bash", str(root / "install.sh"), *args], capture_output=True,
                          text=True, cwd=cwd, timeout=60)


def test_bundle_is_versioned_and_complete(built):
    tarball, root, models = built
    assert tarball.name == f"edgemix-{VERSION}-rpi4.tar.gz"
    digest = hashlib.sha256(tarball.read_bytes()).hexdigest()
    assert (tarball.parent / (tarball.name + ".sha256")).read_text().split() == [
        digest, tarball.name]
    with tarfile.open(tarball) as t:
        names = t.getnames()
    assert all(n == root.name or n.startswith(root.name + "/") for n in names)
    for f in ("install.sh", "MANIFEST.sha256", "bundle.json", "profile.toml", "session.toml",
              "requirements.txt", "apt-packages.txt", "README.txt", "systemd/edgemix.service",
              "systemd/edgemix-governor.service", "systemd/edgemix-jack.service",
              "limits.d/99-edgemix-audio.conf",
              "bin/cpu-governor.sh"):
        assert (root / f).is_file(), f
    assert os.access(root / "install.sh", os.X_OK)

    info = json.loads((root / "bundle.json").read_text())
    assert (info["name"], info["version"], info["target"], info["arch"]) == (
        "edgemix", VERSION, "rpi4", "aarch64")
    assert info["model_format"] == "tflite-int8" and info["wheels_bundled"] is False

    # The wheel is this tree's package, with the profiles inside.
    wheels = sorted((root / "wheels").glob("edgemix-*.whl"))
    assert [w.name for w in wheels] == [info["wheel"]]
    with zipfile.ZipFile(wheels[0]) as z:
        members = set(z.namelist())
    assert {"edgemix/console.py", "edgemix/params.py",
            "edgemix/boardtools/data/profiles/rpi4.toml",
            "edgemix/boardtools/data/templates/install.sh"} <= members

    # Models: the int8 TFLite and the fallback weights, never the float TFLite.
    shipped = sorted(p.name for p in (root / "models").iterdir())
    assert shipped == sorted(info["model_files"])
    assert any(n.endswith(".tflite") and "int8" in n for n in shipped)
    assert any(n.endswith(".npz") and not n.startswith("golden") for n in shipped)
    assert not any(n.endswith(".tflite") and "int8" not in n for n in shipped)
    for n in shipped:
        if n != "SHA256SUMS":  # the bundle's own: the lines of what it ships (below)
            assert (root / "models" / n).read_bytes() == (models / n).read_bytes()

    # The profile is the shipped one; the session config loads at its settings.
    prof = profiles.load("rpi4")
    assert profiles.load(root / "profile.toml").to_dict() | {"source": ""} == \
        prof.to_dict() | {"source": ""}
    from edgemix.session import load_session
    s = load_session(root / "session.toml")
    assert (s.sample_rate_hz, s.block_size, s.n_channels, s.n_aux) == (
        prof.sample_rate_hz, prof.block_size, prof.n_channels, prof.n_aux)
    assert s.backend.kind == "jack" and s.model.backend == "tflite"
    assert Path(s.model.path).resolve() == (root / "models").resolve() / Path(s.model.path).name
    reqs = (root / "requirements.txt").read_text().split()
    assert any(r.lower().startswith("ai-edge-litert") for r in reqs)
    assert any(r.lower().startswith("jack-client") for r in reqs)
    assert "jackd2" in (root / "apt-packages.txt").read_text().split()


def test_manifest_lists_every_file_with_its_sha256(built):
    _, root, _ = built
    lines = (root / "MANIFEST.sha256").read_text().splitlines()
    listed = {}
    for ln in lines:
        h, path = ln.split("  ", 1)
        listed[path] = h
    files = sorted(p.relative_to(root).as_posix() for p in root.rglob("*")
                   if p.is_file() and p.name != "MANIFEST.sha256")
    assert sorted(listed) == files
    assert [ln.split("  ", 1)[1] for ln in lines] == files  # sorted
    for path, h in listed.items():
        assert hashlib.sha256((root / path).read_bytes()).hexdigest() == h
    # coreutils agrees (an independent reader of the same format)
    r = subprocess.run(["sha256sum", "--check", "--strict", "--quiet", "MANIFEST.sha256"],
                       cwd=root, capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


def test_the_wheel_installs_edgemix_and_nothing_else(built):
    """No top-level ``board`` (Adafruit Blinka's module name on a Pi) and no ``export``
    (the host-side toolchain never ships to a board): the board data is edgemix's."""
    _, root, _ = built
    wheel, = (root / "wheels").glob("edgemix-*.whl")
    with zipfile.ZipFile(wheel) as z:
        members = z.namelist()
        top_level = z.read(next(m for m in members if m.endswith(".dist-info/top_level.txt"))
                           ).decode().split() if any(m.endswith("top_level.txt")
                                                     for m in members) else ["edgemix"]
    top = {m.split("/", 1)[0] for m in members}
    assert top == {"edgemix", wheel.name.split("-py3")[0] + ".dist-info"}, top
    assert top_level == ["edgemix"]
    assert not any(m.startswith(("board/", "export/")) for m in members)


def test_model_checksums_pass_inside_the_bundles_models_folder(built):
    """``sha256sum -c SHA256SUMS`` on the board, in ``models/``: every line is a file the
    bundle ships, with the model build's digest."""
    _, root, models = built
    if not (models / "SHA256SUMS").is_file():
        pytest.skip("the fixture models have no SHA256SUMS (the real models/ is not built)")
    r = subprocess.run(["sha256sum", "--check", "--strict", "SHA256SUMS"],
                       cwd=root / "models", capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    src = dict(reversed(ln.split()) for ln in (models / "SHA256SUMS").read_text().splitlines())
    got = dict(reversed(ln.split()) for ln in
               (root / "models" / "SHA256SUMS").read_text().splitlines())
    assert got and all(src[n] == h for n, h in got.items())
    assert set(got) == {p.name for p in (root / "models").iterdir()} - {"SHA256SUMS"}


def test_installer_verifies_the_intact_bundle(built):
    _, root, _ = built
    r = _install(root, "--verify-only", cwd="/")
    assert r.returncode == 0, r.stderr
    n = len((root / "MANIFEST.sha256").read_text().splitlines())
    assert f"manifest OK: {n} files" in r.stderr


def _tampered_copies(root: Path, tmp: Path):
    files = sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())
    for i, rel in enumerate(files):
        copy = tmp / f"c{i}" / root.name
        shutil.copytree(root, copy)
        f = copy / rel
        data = bytearray(f.read_bytes())
        k = len(data) // 2
        data[k] = (data[k] + 1) % 256 if data[k] not in (0x0A,) else 0x20
        f.write_bytes(bytes(data))
        yield f"changed {rel}", copy
    copy = tmp / "added" / root.name
    shutil.copytree(root, copy)
    (copy / "models" / "extra.tflite").write_bytes(b"x")
    yield "added a file", copy
    copy = tmp / "removed" / root.name
    shutil.copytree(root, copy)
    (copy / "README.txt").unlink()
    yield "removed a file", copy
    copy = tmp / "symlink" / root.name
    shutil.copytree(root, copy)
    (copy / "session.toml").unlink()
    (copy / "session.toml").symlink_to(copy / "profile.toml")
    yield "replaced a file by a symlink", copy


def test_any_change_makes_the_installer_refuse_before_touching_anything(built, tmp_path):
    _, root, _ = built
    n = 0
    for what, copy in _tampered_copies(root, tmp_path):
        prefix = tmp_path / "prefix" / str(n)
        # the real installer, asked to install for real (user mode): it must stop first
        r = _install(copy, "--prefix", str(prefix), "--no-system", "--any-arch", cwd="/")
        assert r.returncode != 0, what
        assert "REFUSING to install" in r.stderr, (what, r.stderr)
        assert not prefix.exists(), what
        n += 1
    assert n == len([p for p in root.rglob("*") if p.is_file()]) + 3


def _render(root: Path, tmp: Path) -> tuple[Path, Path]:
    """install.sh's own rendering of the units for a prefix whose venv is this one."""
    prefix = tmp / "opt-edgemix"
    (prefix / "venv" / "bin").mkdir(parents=True)
    venv_bin = Path(sys.executable).parent
    for exe in ("python", "edgemix"):
        (prefix / "venv" / "bin" / exe).symlink_to(venv_bin / exe)
    (prefix / "bin").mkdir()
    shutil.copy2(root / "bin" / "cpu-governor.sh", prefix / "bin" / "cpu-governor.sh")
    out = tmp / "rendered"
    r = _install(root, "--render-only", str(out), "--prefix", str(prefix), "--user", "audio")
    assert r.returncode == 0, r.stderr
    return prefix, out


def _verify(*units: Path) -> subprocess.CompletedProcess:
    exe = shutil.which("systemd-analyze")
    assert exe, "systemd-analyze is missing: apt-get install systemd (scripts/apt-test.txt)"
    return subprocess.run([exe, "verify", "--man=no", *map(str, units)], capture_output=True,
                          text=True, timeout=60)


def test_systemd_units_pass_systemd_analyze_verify(built, tmp_path):
    _, root, _ = built
    prof = profiles.load("rpi4")
    prefix, out = _render(root, tmp_path)
    unit = out / "edgemix.service"
    text = unit.read_text()
    for line in ("CPUSchedulingPolicy=fifo", f"CPUSchedulingPriority={prof.audio_rtprio}",
                 f"LimitRTPRIO={prof.audio_rtprio}", "LimitMEMLOCK=infinity",
                 "Restart=on-failure", "Environment=NUMBA_CACHE_DIR=/var/cache/edgemix/numba",
                 "CacheDirectory=edgemix", "User=audio",
                 "CPUAffinity=" + " ".join(map(str, sorted(
                     set(prof.audio_cores) | set(prof.control_cores)))),
                 f"ExecStart={prefix}/venv/bin/edgemix run --config {prefix}/session.toml"):
        assert line in text.splitlines(), line
    pre = [ln for ln in text.splitlines() if ln.startswith("ExecStartPre=")]
    assert len(pre) == 1 and f"{prefix}/venv/bin/edgemix board warmup" in pre[0]
    assert "@" not in text.replace("@audio", "")  # every marker filled in
    limits = (out / "99-edgemix-audio.conf").read_text()
    assert f"@audio   -   rtprio    {prof.audio_rtprio}" in limits
    assert "@audio   -   memlock   unlimited" in limits

    jack = (out / "edgemix-jack.service").read_text()
    assert (f"-r {prof.sample_rate_hz} -p {prof.block_size} -n {prof.periods}" in jack
            and "User=audio" in jack)
    assert "After=sound.target edgemix-governor.service edgemix-jack.service" in text
    r = _verify(unit, out / "edgemix-governor.service", out / "edgemix-jack.service")
    assert r.returncode == 0, r.stderr
    assert str(out) not in r.stdout + r.stderr, r.stdout + r.stderr   # not even a warning

    # The check can fail: a typo in a directive's value is reported for the file.
    broken = tmp_path / "broken" / "edgemix.service"
    broken.parent.mkdir()
    broken.write_text(text.replace("CPUSchedulingPolicy=fifo", "CPUSchedulingPolicy=fifoo"))
    r = _verify(broken)
    assert str(broken) in r.stdout + r.stderr
    missing = tmp_path / "missing" / "edgemix.service"
    missing.parent.mkdir()
    missing.write_text(text.replace(f"{prefix}/venv/bin/edgemix", f"{prefix}/venv/bin/nope"))
    assert _verify(missing).returncode != 0


def test_cpu_governor_helper_runs_here(built):
    _, root, _ = built
    r = subprocess.run(["bash", str(root / "bin" / "cpu-governor.sh"), "show"],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    n = len(list(Path("/sys/devices/system/cpu").glob("cpu[0-9]*/cpufreq/scaling_governor")))
    if n:
        assert len(r.stdout.splitlines()) == n
    else:
        assert "no cpufreq governors" in r.stderr


def test_bundle_is_reproducible(built, tmp_path):
    """Same inputs (wheel, models, profile, SOURCE_DATE_EPOCH) -> the same bytes.  The wheel
    is the fixture's, so an edit to the shared tree between two builds cannot interfere."""
    tarball, root, models = built
    wheel = next((root / "wheels").glob("edgemix-*.whl"))
    a = B.build_bundle("rpi4", tmp_path / "a", models_dir=models, wheel=wheel)
    b = B.build_bundle("rpi4", tmp_path / "b", models_dir=models, wheel=wheel)
    assert a.read_bytes() == b.read_bytes()
    # and it is the fixture's bundle, but for the build time recorded in bundle.json
    with tarfile.open(a) as t:
        got = {m.name: t.extractfile(m).read() for m in t.getmembers() if m.isfile()}
    ours = {f"{root.name}/{p.relative_to(root).as_posix()}": p.read_bytes()
            for p in root.rglob("*") if p.is_file()}
    assert set(got) == set(ours)
    differ = {n for n in got if got[n] != ours[n]}
    assert differ <= {f"{root.name}/bundle.json", f"{root.name}/MANIFEST.sha256"}
    with pytest.raises(ValueError, match="not an edgemix"):
        B.build_bundle("rpi4", tmp_path / "c", models_dir=models, wheel=tmp_path / "x.whl")


def test_missing_model_artifact_is_a_clear_error(tmp_path):
    empty = tmp_path / "models"
    empty.mkdir()
    (empty / "student.onnx").write_bytes(b"x")
    with pytest.raises(ValueError, match=r"no tflite-int8 model \(\*\.tflite\) for target rpi4"):
        B.select_models(profiles.load("rpi4"), empty)
    r = CliRunner().invoke(cli, ["board", "bundle", "--target", "rpi4", "-o", str(tmp_path / "d"),
                                   "--models", str(empty)])
    assert r.exit_code == 2
    assert r.output.count("\n") == 1 and "export.build_models" in r.output
    assert not (tmp_path / "d").exists() or not list((tmp_path / "d").iterdir())


def test_model_selection_follows_the_profile_and_checks_sha256sums(tmp_path):
    d = tmp_path / "models"
    d.mkdir()
    content = {"student.npz": b"w", "golden.npz": b"g", "student_fp32.tflite": b"f",
               "student_int8.tflite": b"i", "student.onnx": b"o", "MODEL_CARD.md": b"c"}
    for n, b in content.items():
        (d / n).write_bytes(b)
    pick = lambda t: sorted(p.name for p in B.select_models(profiles.load(t), d))  # noqa: E731
    assert pick("rpi4") == ["MODEL_CARD.md", "golden.npz", "student.npz", "student_int8.tflite"]
    assert pick("generic-aarch64") == ["MODEL_CARD.md", "golden.npz", "student.npz",
                                       "student_fp32.tflite"]
    assert pick("x86-laptop") == ["MODEL_CARD.md", "golden.npz", "student.npz", "student.onnx"]
    sums = "".join(f"{hashlib.sha256(b).hexdigest()}  {n}\n" for n, b in content.items())
    (d / "SHA256SUMS").write_text(sums)
    assert "SHA256SUMS" in pick("rpi4")
    (d / "student_int8.tflite").write_bytes(b"rebuilt but not re-summed")
    with pytest.raises(ValueError, match="student_int8.tflite: does not match SHA256SUMS"):
        pick("rpi4")


def test_warmup_entry_point_compiles_at_the_profile_settings(built):
    _, root, _ = built
    env = edgemix_env()
    r = subprocess.run(edgemix_exe() + ["board", "warmup", "--profile",
                        str(root / "profile.toml")], capture_output=True, text=True,
                       env=env, timeout=300)
    assert r.returncode == 0, r.stderr
    assert "console" in r.stderr and "features" in r.stderr
    r = subprocess.run(edgemix_exe() + ["board", "warmup", "--profile",
                        "rpi9"], capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 1 and "unknown target 'rpi9'" in r.stderr


def test_bundle_session_runs_in_the_real_runner(built):
    """The bundle's session config and model, run by `edgemix run` on a dummy JACK server at
    the profile's settings, for 3 s of real time (what the systemd unit's ExecStart runs)."""
    import jack_helpers
    _, root, models = built
    if models != ROOT / "models":
        pytest.skip("the real models/ is not built yet (the fixture models are not loadable)")
    assert jack_helpers.have_jackd(), "jackd is missing: apt-get install jackd2"
    prof = profiles.load("rpi4")
    with jack_helpers.jack_server(rate=prof.sample_rate_hz, period=prof.block_size,
                                  capture=prof.n_channels, sync=False) as server:
        r = subprocess.run(edgemix_exe() + ["run", "--config", str(root / "session.toml"),
                            "--duration-s", "3", "--server", server, "--json", "--no-rt"],
                           capture_output=True, text=True, cwd=root, timeout=180,
                           env=edgemix_env())
    assert r.returncode == 0, r.stderr
    stats = json.loads(r.stdout)
    assert stats["backend"] == "jack" and stats["n_channels"] == prof.n_channels
    assert stats["block_size"] == prof.block_size
    assert stats["blocks"] >= 0.5 * 3 * prof.sample_rate_hz / prof.block_size
    assert stats["control"]["hops"] >= 10 and stats["control"]["errors"] == 0
    assert stats["audio_errors"] == 0
