"""``edgemix board check``: is this machine ready to run a live mix at its target's settings?

Each check reads what the machine reports (procfs, sysfs, resource limits, the audio
library, the Pi firmware) and gives ``pass``, ``warn`` (it runs, but with a risk of
xruns), ``fail`` (it will not run as configured) or ``skip`` (does not apply here), with
the fix for anything that is not a pass.

Everything the checks read goes through :class:`Host`, rooted at ``/`` by default, so the
same checks run against a fake ``/proc`` and ``/sys`` tree in the tests (a Pi 4 that
throttles, a PREEMPT_RT kernel) on a machine that is neither.
"""
from __future__ import annotations

import importlib.util
import os
import platform
import re
import resource
import shutil
import subprocess
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

from edgemix.boardtools import profiles

STATUSES = ("pass", "warn", "fail", "skip")

#: Bits of ``vcgencmd get_throttled`` (Raspberry Pi firmware documentation, "vcgencmd").
THROTTLE_BITS_NOW = {0: "under-voltage", 1: "ARM frequency capped", 2: "throttled",
                     3: "soft temperature limit"}
THROTTLE_BITS_SINCE_BOOT = {16: "under-voltage", 17: "ARM frequency capped",
                            18: "throttled", 19: "soft temperature limit"}
#: The Pi 4/5 firmware starts throttling the ARM cores at 80 degC (85 degC hard limit);
#: warn 10 degC before so a show in a hot room is not a surprise.
TEMP_WARN_C = 70.0
TEMP_FAIL_C = 80.0
#: SCHED_FIFO and JACK's clients need the processes' memory locked; the engine's buffers,
#: Numba's compiled code and the Python heap of a 32-channel session stay under this.
MEMLOCK_MIN_MIB = 256


@dataclass(frozen=True)
class Check:
    """One line of the report: what was checked, what was found, and the fix."""

    name: str
    status: str
    found: str
    fix: str = ""

    def __post_init__(self):
        if self.status not in STATUSES:
            raise ValueError(f"{self.name}: status {self.status!r} is not one of {STATUSES}")


class Host:
    """What the checks may look at: files under ``root``, commands, limits, uname.

    The defaults read the real machine; tests pass a fake ``root`` and canned answers.
    """

    def __init__(self, root="/", commands: dict | None = None, uname_version: str | None = None,
                 machine: str | None = None, limits: dict | None = None,
                 fifo_probe: bool | None = None, env: dict | None = None):
        self.root = Path(root)
        self._commands = commands
        self._uname_version = uname_version
        self._machine = machine
        self._limits = limits
        self._fifo_probe = fifo_probe
        self.env = os.environ if env is None else env

    def path(self, p: str) -> Path:
        return self.root / p.lstrip("/")

    def read(self, p: str) -> str | None:
        try:
            return self.path(p).read_bytes().decode("utf-8", "replace")
        except OSError:
            return None

    def glob(self, pattern: str) -> list[Path]:
        return sorted(self.root.glob(pattern.lstrip("/")))

    def run(self, argv: list[str]) -> tuple[int, str] | None:
        """``(returncode, stdout)`` or None when the command does not exist here."""
        if self._commands is not None:
            out = self._commands.get(" ".join(argv))
            return None if out is None else (0, out)
        if shutil.which(argv[0]) is None:
            return None
        try:
            r = subprocess.run(argv, capture_output=True, text=True, timeout=5)
        except (OSError, subprocess.TimeoutExpired):
            return None
        return r.returncode, r.stdout

    def which(self, name: str) -> bool:
        if self._commands is not None:
            return any(k.split()[0] == name for k in self._commands)
        return shutil.which(name) is not None

    def uname_version(self) -> str:
        return self._uname_version if self._uname_version is not None else os.uname().version

    def machine(self) -> str:
        return self._machine or platform.machine()

    def getrlimit(self, name: str) -> tuple[int, int]:
        if self._limits is not None:
            return self._limits[name]
        return resource.getrlimit(getattr(resource, name))

    def can_fifo(self, priority: int) -> tuple[bool, str]:
        """Really ask for SCHED_FIFO at ``priority``, in a child process."""
        if self._fifo_probe is not None:
            return self._fifo_probe, "(given)"
        code = ("import os,sys\ntry:\n os.sched_setscheduler(0, os.SCHED_FIFO, "
                f"os.sched_param({int(priority)}))\nexcept OSError as e:\n"
                " print(e.strerror); sys.exit(1)")
        try:
            r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                               timeout=10)
        except (OSError, subprocess.TimeoutExpired) as e:
            return False, str(e)
        return r.returncode == 0, r.stdout.strip()

    def processes(self) -> set[str]:
        """Command names of running processes (``/proc/*/comm``)."""
        names = set()
        for comm in self.glob("proc/[0-9]*/comm"):
            try:
                names.add(comm.read_text().strip())
            except OSError:
                pass
        return names


def pi_model(host: Host) -> str:
    """``/proc/device-tree/model`` ('' when the machine has no device tree)."""
    return (host.read("/proc/device-tree/model") or "").rstrip("\x00\n ").strip()


def auto_target(host: Host) -> str:
    """The shipped profile that fits this machine."""
    model = pi_model(host)
    if model.startswith("Raspberry Pi 5"):
        return "rpi5"
    if model.startswith("Raspberry Pi 4"):
        return "rpi4"
    return "generic-aarch64" if host.machine() in ("aarch64", "arm64") else "x86-laptop"


# ---- the checks --------------------------------------------------------------------------

def check_board(host: Host, prof: profiles.Profile) -> Check:
    model = pi_model(host)
    if model.startswith("Raspberry Pi"):
        if prof.raspberry_pi and not model.startswith(prof.device_tree_model):
            return Check("board", "warn", f"{model}; profile {prof.name} is for a "
                         f"{prof.device_tree_model}", f"use --target {auto_target(host)}")
        return Check("board", "pass", model)
    what = f"not a Raspberry Pi ({host.machine()}" + (f", device tree: {model})" if model else
                                                       ", no /proc/device-tree/model)")
    if prof.raspberry_pi:
        return Check("board", "fail", what + f"; profile {prof.name} is for a Raspberry Pi",
                     f"use --target {auto_target(host)} here, or run this on the Pi")
    return Check("board", "pass", what + "; Pi-only checks are skipped")


def check_arch(host: Host, prof: profiles.Profile) -> Check:
    m = host.machine()
    m = "aarch64" if m == "arm64" else m
    if m != prof.arch:
        return Check("architecture", "fail", f"{m}, profile {prof.name} wants {prof.arch}",
                     f"use --target {auto_target(host)}, or the {prof.arch} machine")
    return Check("architecture", "pass", f"{m} (64-bit)")


def check_python() -> Check:
    v = sys.version_info
    found = f"Python {v.major}.{v.minor}.{v.micro}"
    if v < (3, 11):
        return Check("python", "fail", found, "install Python 3.11 or newer (bookworm has it)")
    return Check("python", "pass", found)


def check_preemption(host: Host) -> Check:
    version = host.uname_version()
    if (host.read("/sys/kernel/realtime") or "").strip() == "1":
        return Check("kernel preemption", "pass", "PREEMPT_RT (/sys/kernel/realtime = 1)")
    if "PREEMPT_RT" in version:
        return Check("kernel preemption", "pass", f"PREEMPT_RT ({version})")
    fix_rt = ("boot with preempt=full (append to /boot/firmware/cmdline.txt on a Pi) or "
              "install a PREEMPT_RT kernel (Debian: linux-image-rt-arm64 / -rt-amd64)")
    if "PREEMPT_DYNAMIC" in version:
        mode = None
        sched = host.read("/sys/kernel/debug/sched/preempt")
        if sched:
            m = re.search(r"\((\w+)\)", sched)
            mode = m.group(1) if m else None
        if mode is None:
            m = re.search(r"\bpreempt=(\w+)", host.read("/proc/cmdline") or "")
            mode = m.group(1) if m else None
        if mode == "full":
            return Check("kernel preemption", "pass", "PREEMPT_DYNAMIC, mode full")
        if mode is None:
            return Check("kernel preemption", "warn",
                         "PREEMPT_DYNAMIC, mode not readable (no debugfs, no preempt= on the "
                         "command line: the build default, often voluntary)", fix_rt)
        return Check("kernel preemption", "warn", f"PREEMPT_DYNAMIC, mode {mode}", fix_rt)
    if re.search(r"\bPREEMPT\b", version):
        return Check("kernel preemption", "pass", "PREEMPT (full preemption)")
    return Check("kernel preemption", "warn", f"no preemption model in uname -v ({version})",
                 fix_rt)


def check_governor(host: Host, prof: profiles.Profile) -> Check:
    files = host.glob("sys/devices/system/cpu/cpu[0-9]*/cpufreq/scaling_governor")
    if not files:
        return Check("cpu governor", "skip", "no cpufreq governors (fixed clock or a VM)")
    govs = {}
    for f in files:
        govs.setdefault(f.read_text().strip(), []).append(f.parts[-3])
    found = ", ".join(f"{g} on {len(c)} CPU{'s' if len(c) > 1 else ''}" for g, c in govs.items())
    if not prof.governor:
        return Check("cpu governor", "pass", found + " (the profile leaves it to the OS)")
    if set(govs) == {prof.governor}:
        return Check("cpu governor", "pass", found)
    return Check("cpu governor", "warn", found + f"; the profile wants {prof.governor}",
                 f"sudo /opt/edgemix/bin/cpu-governor.sh set {prof.governor} (the bundle's "
                 "edgemix-governor.service does it at boot)")


def _limit_str(v: int) -> str:
    return "unlimited" if v == resource.RLIM_INFINITY else str(v)


def check_rtprio(host: Host, prof: profiles.Profile) -> Check:
    soft, _ = host.getrlimit("RLIMIT_RTPRIO")
    ok, why = host.can_fifo(prof.audio_rtprio)
    found = f"RLIMIT_RTPRIO {_limit_str(soft)}"
    fix = ("add the user to group audio and install the bundle's limits.d/99-edgemix-audio.conf "
           f"(rtprio {prof.audio_rtprio}), then log in again; the systemd unit sets "
           "LimitRTPRIO itself")
    if ok:
        how = "" if soft == resource.RLIM_INFINITY or soft >= prof.audio_rtprio else \
            " (privileged: CAP_SYS_NICE)"
        return Check("real-time priority", "pass",
                     f"{found}; SCHED_FIFO {prof.audio_rtprio} granted{how}")
    return Check("real-time priority", "warn",
                 f"{found}; SCHED_FIFO {prof.audio_rtprio} refused ({why or 'not permitted'})",
                 fix)


def check_memlock(host: Host, prof: profiles.Profile) -> Check:
    soft, _ = host.getrlimit("RLIMIT_MEMLOCK")
    need = MEMLOCK_MIN_MIB if prof.memlock_mib is None else prof.memlock_mib
    if soft == resource.RLIM_INFINITY:
        return Check("locked memory", "pass", "RLIMIT_MEMLOCK unlimited")
    mib = soft / 2 ** 20
    found = f"RLIMIT_MEMLOCK {mib:g} MiB"
    if mib >= need:
        return Check("locked memory", "pass", found)
    return Check("locked memory", "warn", found + f", under {need} MiB",
                 "install the bundle's limits.d/99-edgemix-audio.conf (memlock) and log in "
                 "again; the systemd unit sets LimitMEMLOCK itself")


def check_audio_devices(prof: profiles.Profile) -> Check:
    if importlib.util.find_spec("sounddevice") is None:
        status = "fail" if prof.backend == "portaudio" else "warn"
        return Check("audio devices", status, "sounddevice is not installed: cannot list "
                     "PortAudio devices", "pip install 'edgemix[live]' (sounddevice, rtmixer)")
    try:
        import sounddevice as sd
        apis = [a["name"] for a in sd.query_hostapis()]
        devices = list(sd.query_devices())
    except (OSError, ImportError) as e:  # the PortAudio library itself is missing
        return Check("audio devices", "fail" if prof.backend == "portaudio" else "warn",
                     f"PortAudio not usable ({e})", "apt install libportaudio2")
    ins = [d for d in devices if d["max_input_channels"] >= prof.n_channels]
    outs = [d for d in devices if d["max_output_channels"] >= 2]
    found = (f"{len(devices)} devices on {', '.join(apis) or 'no host API'}; "
             f"{len(ins)} with >= {prof.n_channels} inputs, {len(outs)} with stereo out")
    if not devices:
        return Check("audio devices", "warn", found, "connect the audio interface (USB) and "
                     "check `aplay -l` / `arecord -l`")
    if not ins or not outs:
        return Check("audio devices", "warn", found,
                     f"connect an interface with {prof.n_channels} inputs, or lower "
                     "audio.n_channels in the profile")
    return Check("audio devices", "pass", found)


def check_audio_server(host: Host, prof: profiles.Profile) -> Check:
    running = host.processes()
    have = {n: host.which(n) for n in ("jackd", "pipewire", "pw-jack")}
    jack_up = bool({"jackd", "jackdbus"} & running)
    pw_up = "pipewire" in running
    parts = [f"{n} {'installed' if ok else 'absent'}" for n, ok in have.items()]
    parts.append("running: " + (", ".join(n for n, up in (("jackd", jack_up),
                                                            ("pipewire", pw_up)) if up) or "none"))
    found = "; ".join(parts)
    if prof.backend == "jack":
        if not (have["jackd"] or have["pw-jack"]):
            return Check("audio server", "fail", found,
                         "apt install jackd2 (or pipewire-jack), and run it as the service user")
        if not (jack_up or pw_up):
            return Check("audio server", "warn", found, "start JACK before edgemix, e.g. "
                         f"jackd -R -P 85 -d alsa -r {prof.sample_rate_hz} "
                         f"-p {prof.block_size} -n {prof.periods}")
        return Check("audio server", "pass", found)
    if not (jack_up or pw_up):
        return Check("audio server", "pass", found + " (PortAudio talks to ALSA directly)")
    return Check("audio server", "pass", found)


def check_swap(host: Host) -> Check:
    swaps = host.read("/proc/swaps")
    if swaps is None:
        return Check("swap", "skip", "/proc/swaps not readable")
    lines = [ln.split() for ln in swaps.splitlines()[1:] if ln.strip()]
    if not lines:
        return Check("swap", "pass", "no swap active")
    total_mib = sum(int(ln[2]) for ln in lines if len(ln) > 2 and ln[2].isdigit()) / 1024
    return Check("swap", "warn", f"{len(lines)} swap area(s), {total_mib:.0f} MiB "
                 "(a page-in on the audio thread is an xrun)",
                 "lock memory (LimitMEMLOCK, the unit does) and on a Pi turn the swap file "
                 "off: sudo dphys-swapfile swapoff && sudo systemctl disable dphys-swapfile")


def check_throttling(host: Host, is_pi: bool) -> Check:
    r = host.run(["vcgencmd", "get_throttled"])
    if r is None:
        why = "not a Raspberry Pi" if not is_pi else "vcgencmd not installed"
        return Check("throttling", "skip" if not is_pi else "warn", f"{why}: no firmware report",
                     "" if not is_pi else "apt install libraspberrypi-bin (vcgencmd)")
    m = re.search(r"throttled=(0x[0-9a-fA-F]+)", r[1])
    if not m:
        return Check("throttling", "warn", f"unreadable vcgencmd answer: {r[1].strip()[:60]}",
                     "check that the user may use /dev/vchiq (group video)")
    bits = int(m.group(1), 16)
    now = [t for b, t in THROTTLE_BITS_NOW.items() if bits >> b & 1]
    past = [t for b, t in THROTTLE_BITS_SINCE_BOOT.items() if bits >> b & 1]
    fix = ("use the official power supply (5.1 V 3 A on a Pi 4, 5 V 5 A on a Pi 5) and a "
           "heatsink or fan")
    if now:
        return Check("throttling", "fail", f"{m.group(1)}: now {', '.join(now)}", fix)
    if past:
        return Check("throttling", "warn", f"{m.group(1)}: since boot {', '.join(past)}", fix)
    return Check("throttling", "pass", f"{m.group(1)}: never throttled since boot")


def check_temperature(host: Host) -> Check:
    temps = []
    for z in host.glob("sys/class/thermal/thermal_zone*/temp"):
        try:
            temps.append((int(z.read_text().strip()) / 1000.0, z.parts[-2]))
        except (OSError, ValueError):
            pass
    if not temps:
        return Check("temperature", "skip", "no thermal zones reported")
    t, zone = max(temps)
    found = f"{t:.1f} degC ({zone}, hottest of {len(temps)})"
    fix = "add a heatsink/fan or move the board out of the sun: the firmware throttles at 80 degC"
    if t >= TEMP_FAIL_C:
        return Check("temperature", "fail", found, fix)
    if t >= TEMP_WARN_C:
        return Check("temperature", "warn", found, fix)
    return Check("temperature", "pass", found)


def check_model_runtime(prof: profiles.Profile) -> Check:
    modules = {"tflite-int8": ("ai_edge_litert", "tflite_runtime"),
               "tflite-fp32": ("ai_edge_litert", "tflite_runtime"),
               "onnx": ("onnxruntime",), "numba": ("numba",)}
    found = []
    for fmt in (prof.model_format, prof.model_fallback):
        if fmt:
            mod = next((m for m in modules[fmt] if importlib.util.find_spec(m)), None)
            found.append((fmt, mod))
    text = "; ".join(f"{fmt}: {mod or 'no runtime'}" for fmt, mod in found)
    if found[0][1]:
        return Check("model runtime", "pass", text)
    fix = "pip install 'edgemix[infer]' (" + ", ".join(modules[prof.model_format]) + ")"
    if len(found) > 1 and found[1][1]:
        return Check("model runtime", "warn", text + f" (runs on the {found[1][0]} fallback)", fix)
    return Check("model runtime", "fail", text, fix)


def check_numba_cache(host: Host) -> Check:
    d = host.env.get("NUMBA_CACHE_DIR")
    if not d:
        return Check("numba cache", "warn", "NUMBA_CACHE_DIR not set: kernels cache beside the "
                     "package (fails on a read-only install)",
                     "export NUMBA_CACHE_DIR=/var/cache/edgemix/numba (the unit sets it)")
    p = Path(d)
    probe = p if p.exists() else p.parent
    if not os.access(probe, os.W_OK):
        return Check("numba cache", "fail", f"{d} is not writable",
                     f"create it for the service user: sudo install -d -o edgemix {d}")
    n = len(list(p.rglob("*.nbi"))) if p.is_dir() else 0
    return Check("numba cache", "pass", f"{d} (writable, {n} cached kernel index files)")


def run_checks(target=None, host: Host | None = None) -> tuple[profiles.Profile, list[Check]]:
    """Every check for ``target`` (a profile name/path; None picks one for this machine)."""
    host = host or Host()
    prof = profiles.load(target or auto_target(host))
    is_pi = pi_model(host).startswith("Raspberry Pi")
    checks = [
        check_board(host, prof), check_arch(host, prof), check_python(),
        check_preemption(host), check_governor(host, prof), check_rtprio(host, prof),
        check_memlock(host, prof), check_audio_devices(prof), check_audio_server(host, prof),
        check_swap(host), check_throttling(host, is_pi), check_temperature(host),
        check_model_runtime(prof), check_numba_cache(host),
    ]
    return prof, checks


def report_dict(prof: profiles.Profile, checks: list[Check], host: Host | None = None) -> dict:
    host = host or Host()
    counts = {s: sum(c.status == s for c in checks) for s in STATUSES}
    return {
        "target": prof.name, "raspberry_pi": pi_model(host).startswith("Raspberry Pi"),
        "board_model": pi_model(host), "machine": host.machine(),
        "kernel": host.uname_version(), "checks": [asdict(c) for c in checks],
        "summary": counts, "ok": counts["fail"] == 0,
    }


def format_table(prof: profiles.Profile, checks: list[Check]) -> str:
    """Plain words for people: one row per check, the fix on the line below."""
    w = max(len(c.name) for c in checks)
    rows = [f"edgemix board check: target {prof.name} ({prof.description})",
            f"{'STATUS':<6}  {'CHECK':<{w}}  FOUND"]
    for c in checks:
        rows.append(f"{c.status:<6}  {c.name:<{w}}  {c.found}")
        if c.fix and c.status in ("warn", "fail"):
            rows.append(f"{'':<6}  {'':<{w}}  fix: {c.fix}")
    counts = {s: sum(c.status == s for c in checks) for s in STATUSES}
    rows.append(", ".join(f"{n} {s}" for s, n in counts.items()))
    return "\n".join(rows)
