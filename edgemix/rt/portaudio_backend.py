"""PortAudio backend through python-rtmixer: the device callback never enters Python.

rtmixer's C callback copies each period's input into an *input ring* and plays the *output
ring*; a DSP worker thread (Python) takes exactly one block of ``block_size`` frames from
the input ring whenever one is there, runs ``runner.process`` and appends the mix to the
output ring.  The output ring is prefilled with ``ring_blocks`` blocks of silence before
the stream starts, and both ring actions are queued before the stream starts so the C
callback begins them in the same period: an input frame therefore leaves the output
exactly ``ring_blocks * block_size`` frames later (``latency_frames``), on top of the
device's own latency.  The worker has ``ring_blocks`` periods to process a block.

rtmixer ends a ring action when its ring underflows (output) or overflows (input).  The
worker notices, counts an xrun, and restarts the stream with fresh rings, so the fixed
latency above holds again afterwards (a resync, counted in ``resyncs``).
"""
from __future__ import annotations

import logging
import threading
import time

import numpy as np

from edgemix.rt.backend import Backend, DeviceError

log = logging.getLogger("edgemix.rt")


def _import():
    try:
        import rtmixer
        import sounddevice as sd
    except (ImportError, OSError) as e:
        raise DeviceError(f"PortAudio/rtmixer is not available ({e}): install libportaudio2 "
                          "and `pip install edgemix[live]`") from None
    return rtmixer, sd


#: rtmixer action start time that is always in the past (stream time, seconds).
_PAST_S = -1.0e9


def _pow2_at_least(n: int) -> int:
    return 1 << max(0, int(n - 1).bit_length())


def list_devices():
    """PortAudio devices as dicts: index, name, hostapi, max_input/output_channels, rate."""
    _, sd = _import()
    apis = sd.query_hostapis()
    return [{"index": i, "name": d["name"], "hostapi": apis[d["hostapi"]]["name"],
             "max_input_channels": d["max_input_channels"],
             "max_output_channels": d["max_output_channels"],
             "default_samplerate": d["default_samplerate"]}
            for i, d in enumerate(sd.query_devices())]


def resolve_device(device, n_inputs: int) -> dict:
    """Find a duplex device by index or case-insensitive name/host-API substring.

    "" picks PortAudio's default input device.  DeviceError (one line) when nothing or more
    than one device matches, or when the device has too few inputs or no stereo output.
    """
    _, sd = _import()
    devs = list_devices()
    if not devs:
        raise DeviceError("PortAudio sees no audio devices: connect one or start JACK")
    if device in ("", None):
        idx = sd.default.device[0]
        if idx is None or idx < 0:
            idx = next((d["index"] for d in devs if d["max_input_channels"] > 0), None)
        if idx is None:
            raise DeviceError("no PortAudio input device: connect one or set backend.device")
        dev = devs[idx]
    elif str(device).strip().lstrip("-").isdigit():
        idx = int(device)
        if not 0 <= idx < len(devs):
            raise DeviceError(f"device {idx}: no such device, use 0 .. {len(devs) - 1} "
                              "(see `edgemix devices`)")
        dev = devs[idx]
    else:
        want = str(device).lower()
        hits = [d for d in devs
                if want in d["name"].lower() or want in f"{d['name']} ({d['hostapi']})".lower()]
        exact = [d for d in hits if d["name"].lower() == want]
        hits = exact or hits
        if not hits:
            raise DeviceError(f"unknown audio device {device!r}: pick a name or index from "
                              "`edgemix devices`")
        duplex = [d for d in hits if d["max_input_channels"] > 0 and d["max_output_channels"] > 0]
        if len(duplex) > 1:
            names = "; ".join(f"{d['index']}: {d['name']} ({d['hostapi']})" for d in duplex[:4])
            raise DeviceError(f"device {device!r} is ambiguous ({names}): use its index")
        dev = (duplex or hits)[0]
    if dev["max_input_channels"] < n_inputs:
        raise DeviceError(f"device {dev['name']!r} has {dev['max_input_channels']} inputs but "
                          f"the session needs {n_inputs}: use fewer channels or another device")
    if dev["max_output_channels"] < 2:
        raise DeviceError(f"device {dev['name']!r} has {dev['max_output_channels']} outputs: "
                          "the mix needs a stereo output, pick another device")
    return dev


class RtmixerBackend(Backend):
    """PortAudio duplex stream with a C callback and a Python DSP worker thread."""

    name = "portaudio"

    def __init__(self, n_inputs: int, sample_rate_hz: float, block_size: int, *,
                 device="", ring_blocks: int = 4, input_ring_blocks: int = 64,
                 input_map=None, device_blocksize: int = 0):
        super().__init__(n_inputs, sample_rate_hz, block_size)
        if ring_blocks < 1:
            raise ValueError(f"ring_blocks = {ring_blocks}: use 1 or more")
        self.device = device
        self.ring_blocks = int(ring_blocks)
        self.device_blocksize = int(device_blocksize)
        self.input_map = list(input_map) if input_map is not None else list(range(1, n_inputs + 1))
        # rtmixer's ring buffers need power-of-two sizes (in frames)
        self.in_ring_frames = _pow2_at_least(max(input_ring_blocks, 2 * ring_blocks) * block_size)
        self.out_ring_frames = _pow2_at_least((ring_blocks + 2) * block_size)
        self.resyncs = 0
        self.stream = None
        self.dev = None
        self._worker = None
        self._stop = threading.Event()
        self._opened_before = False

    @property
    def latency_frames(self) -> int:
        return self.ring_blocks * self.block_size

    @property
    def device_latency_frames(self) -> int:
        """PortAudio's reported input + output latency (its buffers and the device's)."""
        if self.stream is None:
            return 0
        lat_in, lat_out = self.stream.latency
        return int(round((lat_in + lat_out) * self.sample_rate_hz))

    def info(self) -> dict:
        d = super().info()
        d.update(device=self.dev["name"] if self.dev else str(self.device),
                 hostapi=self.dev["hostapi"] if self.dev else "",
                 ring_blocks=self.ring_blocks, in_ring_frames=self.in_ring_frames,
                 out_ring_frames=self.out_ring_frames, resyncs=self.resyncs)
        return d

    # ---- owner thread ---------------------------------------------------------------------
    def open(self, runner) -> None:
        super().open(runner)
        rtmixer, sd = _import()
        self.finished = False
        if self._opened_before:
            # PortAudio enumerates devices (e.g. a JACK server's) only when it initialises:
            # after a lost device, start it afresh so a returning device is seen again
            sd._terminate()
            sd._initialize()
        self._opened_before = True
        n_dev_in = max(self.input_map)
        self.dev = resolve_device(self.device, n_dev_in)
        try:
            # blocksize 0: PortAudio calls back with the host's own period.  The worker
            # cuts the stream into engine blocks anyway, and a fixed PortAudio block size
            # makes PortAudio adapt buffers, which costs a period (measured on JACK: 64
            # frames at -p 64; PortAudio then reports it as output latency).
            self.stream = rtmixer.MixerAndRecorder(
                device=(self.dev["index"], self.dev["index"]), channels=(n_dev_in, 2),
                blocksize=self.device_blocksize, samplerate=self.sample_rate_hz)
        except Exception as e:  # sounddevice.PortAudioError and friends
            raise DeviceError(f"cannot open {self.dev['name']!r} at "
                              f"{int(self.sample_rate_hz)} Hz / {self.block_size} frames "
                              f"({e}): check the device and the session's rate") from None
        self._rtmixer = rtmixer
        # interleaved frames, exactly the engine's (frames, channels) edge layout
        self._in_ring = rtmixer.RingBuffer(4 * self.n_inputs, self.in_ring_frames)
        self._out_ring = rtmixer.RingBuffer(4 * 2, self.out_ring_frames)
        self._x = np.zeros((self.block_size, self.n_inputs), np.float32)
        self._y = np.zeros((self.block_size, 2), np.float32)
        self._silence = np.zeros((self.ring_blocks * self.block_size, 2), np.float32)

    def _arm(self) -> None:
        """Fresh rings, the output prefilled, both ring actions queued before the stream
        starts so rtmixer's callback begins them in the same period (owner/worker thread)."""
        self._in_ring.flush()
        self._out_ring.flush()
        self._out_ring.write(self._silence)
        # A start time far in the past makes both actions "belated", so each begins at
        # offset 0 of the first callback.  start=0 would be compared with the input's ADC
        # time, which is negative for the first input-latency's worth of stream time, and
        # could delay the recording by a period relative to the playback.
        self._rec = self.stream.record_ringbuffer(self._in_ring, channels=self.input_map,
                                                  start=_PAST_S)
        self._play = self.stream.play_ringbuffer(self._out_ring, start=_PAST_S)

    def start(self) -> None:
        self._arm()
        try:
            self.stream.start()
        except Exception as e:
            raise DeviceError(f"cannot start {self.dev['name']!r} ({e}): is the device "
                              "still there?") from None
        self._stop.clear()
        self._worker = threading.Thread(target=self.guarded, args=(self._work,),
                                        name="edgemix-dsp", daemon=True)
        self._worker.start()

    def stop(self) -> None:
        self._stop.set()
        if self._worker is not None:
            self._worker.join()
            self._worker = None
        if self.stream is not None:
            try:
                self.stream.abort()
            except Exception:
                pass

    def close(self) -> None:
        if self.stream is not None:
            try:
                self.stream.close()
            except Exception:
                pass
            self.stream = None

    # ---- DSP worker thread -----------------------------------------------------------------
    def _resync(self) -> None:
        """A ring ran dry or over: count it, restart the stream with fresh rings."""
        self.xruns += 1
        self.resyncs += 1
        try:
            self.stream.abort()
            self.stream._drain_result_q()
            self.stream._actions.clear()
            self._arm()
            self.stream.start()
        except Exception as e:
            self.lost = f"{self.dev['name']}: {e.__class__.__name__}: {e}"

    def _work(self) -> None:
        self.runner.enter_audio_thread()
        b = self.block_size
        x, y = self._x, self._y
        in_ring, out_ring = self._in_ring, self._out_ring
        poll_s = b / self.sample_rate_hz / 4.0
        check_every = max(1, int(0.05 / poll_s))  # look at rtmixer's actions ~20 times/s
        idle = 0
        while not self._stop.is_set():
            if in_ring.read_available >= b and out_ring.write_available >= b:
                in_ring.readinto(x)
                self.runner.process(x, y)
                out_ring.write(y)
                continue
            idle += 1
            if idle >= check_every:
                idle = 0
                if not self.stream.active:
                    self.lost = f"{self.dev['name']}: the stream stopped"
                    return
                live = self.stream.actions
                if self._rec not in live or self._play not in live:
                    self._resync()
                    if self.lost:
                        return
                    continue
            time.sleep(poll_s)
