"""``edgemix board check``: on this machine (not a Pi), and on fake Pi /proc + /sys trees."""
import json
import platform
import resource
from pathlib import Path

import pytest
from click.testing import CliRunner

from edgemix.cli import cli
from edgemix.boardtools import check as C

NAMES = ("board", "architecture", "python", "kernel preemption", "cpu governor",
         "real-time priority", "locked memory", "audio devices", "audio server", "swap",
         "throttling", "temperature", "model runtime", "numba cache")


def _this_is_a_pi() -> bool:
    p = Path("/proc/device-tree/model")
    return p.is_file() and p.read_bytes().startswith(b"Raspberry Pi")


def test_check_here_as_json():
    r = CliRunner().invoke(cli, ["board", "check", "--json"])
    report = json.loads(r.output)
    checks = {c["name"]: c for c in report["checks"]}
    assert tuple(checks) == NAMES
    for c in report["checks"]:
        assert c["status"] in C.STATUSES
        assert c["found"]
        if c["status"] in ("warn", "fail"):
            assert c["fix"], c
    counts = report["summary"]
    assert sum(counts.values()) == len(NAMES)
    assert report["ok"] == (counts["fail"] == 0)
    assert r.exit_code == (1 if counts["fail"] else 0)
    # What the machine is, read independently of the checker.
    assert report["machine"] == platform.machine()
    if _this_is_a_pi():
        assert report["raspberry_pi"] and checks["board"]["found"].startswith("Raspberry Pi")
    else:
        assert report["raspberry_pi"] is False
        assert checks["board"]["found"].startswith("not a Raspberry Pi")
        assert checks["throttling"]["status"] == "skip"
        assert "not a Raspberry Pi" in checks["throttling"]["found"]
    soft, _ = resource.getrlimit(resource.RLIMIT_MEMLOCK)
    want = "unlimited" if soft == resource.RLIM_INFINITY else f"{soft / 2 ** 20:g} MiB"
    assert want in checks["locked memory"]["found"]
    rt_soft, _ = resource.getrlimit(resource.RLIMIT_RTPRIO)
    assert f"RLIMIT_RTPRIO {C._limit_str(rt_soft)}" in checks["real-time priority"]["found"]
    swaps = Path("/proc/swaps").read_text().splitlines()[1:]
    assert checks["swap"]["status"] == ("warn" if any(s.strip() for s in swaps) else "pass")


def test_check_here_as_table():
    r = CliRunner().invoke(cli, ["board", "check"])
    lines = r.output.splitlines()
    assert lines[0].startswith("edgemix board check: target ")
    rows = {}
    for ln in lines[2:-1]:
        if not ln.startswith(" "):
            status, rest = ln.split(None, 1)
            rows[next(n for n in NAMES if rest.startswith(n))] = status
    assert tuple(rows) == NAMES
    n_fail = sum(s == "fail" for s in rows.values())
    assert lines[-1].startswith(f"{sum(s == 'pass' for s in rows.values())} pass")
    assert r.exit_code == (1 if n_fail else 0)
    if not _this_is_a_pi():
        assert "not a Raspberry Pi" in r.output


def test_a_pi_profile_on_a_non_pi_fails_with_the_fix():
    if _this_is_a_pi():
        pytest.skip("this machine is a Raspberry Pi")
    prof, checks = C.run_checks("rpi4")
    board_row = checks[0]
    assert board_row.status == "fail" and "is for a Raspberry Pi" in board_row.found
    assert "--target" in board_row.fix


def _fake_pi(tmp: Path, model="Raspberry Pi 4 Model B Rev 1.4", governors=("ondemand",) * 4,
             temp_mc=83000, swap=True, realtime="1") -> Path:
    (tmp / "proc/device-tree").mkdir(parents=True)
    (tmp / "proc/device-tree/model").write_bytes(model.encode() + b"\x00")
    (tmp / "proc/swaps").write_text(
        "Filename\tType\tSize\tUsed\tPriority\n"
        + ("/var/swap file 102396 0 -2\n" if swap else ""))
    (tmp / "sys/kernel").mkdir(parents=True)
    if realtime is not None:
        (tmp / "sys/kernel/realtime").write_text(realtime + "\n")
    for i, g in enumerate(governors):
        d = tmp / f"sys/devices/system/cpu/cpu{i}/cpufreq"
        d.mkdir(parents=True)
        (d / "scaling_governor").write_text(g + "\n")
    z = tmp / "sys/class/thermal/thermal_zone0"
    z.mkdir(parents=True)
    (z / "temp").write_text(f"{temp_mc}\n")
    return tmp


def _host(root, throttled="0x0", **kw):
    args = dict(commands={"vcgencmd get_throttled": f"throttled={throttled}\n"},
                uname_version="#1 SMP PREEMPT Debian 1:6.6.51-1+rpt3", machine="aarch64",
                limits={"RLIMIT_RTPRIO": (0, 0), "RLIMIT_MEMLOCK": (8 << 20, 8 << 20)},
                fifo_probe=False, env={})
    args.update(kw)
    return C.Host(root, **args)


def test_a_hot_throttling_pi4_with_swap(tmp_path):
    host = _host(_fake_pi(tmp_path), throttled="0x50005")
    prof, checks = C.run_checks(None, host)
    assert prof.name == "rpi4"                     # picked from the device tree
    got = {c.name: c for c in checks}
    assert got["board"].status == "pass" and got["board"].found.startswith("Raspberry Pi 4")
    assert got["architecture"].status == "pass"
    pre, gov = got["kernel preemption"], got["cpu governor"]
    assert pre.status == "pass" and "PREEMPT_RT" in pre.found
    assert gov.status == "warn" and "ondemand on 4 CPUs" in gov.found
    assert "cpu-governor.sh set performance" in got["cpu governor"].fix
    # 0x50005: now under-voltage + throttled; since boot under-voltage + throttled
    assert got["throttling"].status == "fail"
    assert "now under-voltage, throttled" in got["throttling"].found
    assert got["temperature"].status == "fail" and got["temperature"].found.startswith("83.0 degC")
    assert got["swap"].status == "warn" and "100 MiB" in got["swap"].found
    assert got["real-time priority"].status == "warn"
    assert got["locked memory"].status == "warn" and "8 MiB" in got["locked memory"].found
    assert got["numba cache"].status == "warn"
    assert all(c.fix for c in checks if c.status in ("warn", "fail"))
    report = C.report_dict(prof, checks, host)
    assert report["raspberry_pi"] and not report["ok"]
    json.dumps(report)


def test_a_healthy_pi5(tmp_path):
    root = _fake_pi(tmp_path, model="Raspberry Pi 5 Model B Rev 1.0",
                    governors=("performance",) * 4, temp_mc=52500, swap=False)
    cache = tmp_path / "cache"
    cache.mkdir()
    host = _host(root, limits={"RLIMIT_RTPRIO": (95, 95),
                               "RLIMIT_MEMLOCK": (resource.RLIM_INFINITY,) * 2},
                 fifo_probe=True, env={"NUMBA_CACHE_DIR": str(cache)})
    prof, checks = C.run_checks(None, host)
    assert prof.name == "rpi5"
    got = {c.name: c for c in checks}
    for name in ("board", "architecture", "kernel preemption", "cpu governor",
                 "real-time priority", "locked memory", "swap", "throttling", "temperature",
                 "numba cache"):
        assert got[name].status == "pass", got[name]
    assert got["throttling"].found == "0x0: never throttled since boot"
    assert got["temperature"].found.startswith("52.5 degC")
    # The same board checked against the Pi 4 profile: warn, and name the right target.
    _, checks4 = C.run_checks("rpi4", host)
    assert checks4[0].status == "warn" and checks4[0].fix == "use --target rpi5"


@pytest.mark.parametrize("value,status,words", [
    ("0x0", "pass", "never throttled"),
    ("0x50000", "warn", "since boot under-voltage, throttled"),
    ("0x80000", "warn", "since boot soft temperature limit"),
    ("0x2", "fail", "now ARM frequency capped"),
    ("0x8", "fail", "now soft temperature limit"),
])
def test_throttle_bits_are_decoded(tmp_path, value, status, words):
    c = C.check_throttling(_host(_fake_pi(tmp_path), throttled=value), is_pi=True)
    assert c.status == status and words in c.found


@pytest.mark.parametrize("uname,debugfs,cmdline,status,words", [
    ("#1 SMP PREEMPT_RT Debian 6.1.0-rt", None, "", "pass", "PREEMPT_RT"),
    ("#1 SMP PREEMPT Debian 1:6.6.51-1+rpt3", None, "", "pass", "full preemption"),
    ("#1 SMP PREEMPT_DYNAMIC Debian", "none voluntary (full) ", "", "pass", "mode full"),
    ("#1 SMP PREEMPT_DYNAMIC Debian", "none (voluntary) full ", "", "warn", "mode voluntary"),
    ("#1 SMP PREEMPT_DYNAMIC Debian", None, "root=/dev/sda preempt=full", "pass", "mode full"),
    ("#1 SMP PREEMPT_DYNAMIC Debian", None, "root=/dev/sda", "warn", "not readable"),
    ("#1 SMP Debian 6.1.0", None, "", "warn", "no preemption model"),
])
def test_preemption_models(tmp_path, uname, debugfs, cmdline, status, words):
    root = _fake_pi(tmp_path, realtime=None)
    (root / "proc/cmdline").write_text(cmdline + "\n")
    if debugfs is not None:
        (root / "sys/kernel/debug/sched").mkdir(parents=True)
        (root / "sys/kernel/debug/sched/preempt").write_text(debugfs + "\n")
    c = C.check_preemption(_host(root, uname_version=uname))
    assert c.status == status and words in c.found
    if status == "warn":
        assert "preempt=full" in c.fix


def test_temperature_thresholds(tmp_path):
    for mc, status in ((69999, "pass"), (70000, "warn"), (79999, "warn"), (80000, "fail")):
        root = _fake_pi(tmp_path / str(mc), temp_mc=mc)
        assert C.check_temperature(_host(root)).status == status, mc


def test_bad_target_is_one_line():
    r = CliRunner().invoke(cli, ["board", "check", "--target", "rpi9"])
    assert r.exit_code == 2
    assert r.output.count("\n") == 1 and "unknown target 'rpi9'" in r.output
