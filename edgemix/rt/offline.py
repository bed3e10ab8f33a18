"""Offline backend: WAV stems (or the synthetic session) in, the mix out, through the runner.

The same ``runner.process`` the live backends call runs here on a thread of its own, one
block at a time, as fast as possible or paced in real time (``paced=True``: each block is
released at its wall-clock time, for demos and for testing the live path without a device).

The control path is driven from here, not from a wall-clock thread (``drives_control``):
before each block the backend calls ``runner.step_control()``, which runs every control hop
whose boundary on the sample clock the input has reached.  The parameter trajectory is then
the same on any machine, paced or not.

With ``stems_dir``, the processed stems go there too: one stereo WAV per console channel,
``NN_name.wav``, holding the channel's direct out (after its strip, the automixer, fader and
pan; ``Console.set_direct_outs``).  Summed, they are the mix bus before the reverb return,
the master fader and the limiter.

Stems are checked up front and every problem is one line naming the file and the fix:
missing or unreadable files, files with no frames, mixed sample rates, mono and stereo
stems mixed together.  Stems of different lengths are padded with silence to the longest.
"""
from __future__ import annotations

import pathlib
import threading
import time

import numpy as np

from edgemix.rt.backend import Backend, DeviceError


class StemError(ValueError):
    """A stem file cannot be used; one line naming the file and the fix."""


#: What a folder of stems is searched for by default.
WAV_SUFFIXES = (".wav", ".wave")


def expand_inputs(inputs, suffixes=WAV_SUFFIXES) -> list[pathlib.Path]:
    """A list of stem paths: folders become their files with one of ``suffixes`` (lower
    case, with the dot) in name order."""
    paths: list[pathlib.Path] = []
    for item in inputs:
        p = pathlib.Path(item)
        if p.is_dir():
            found = sorted(q for q in p.iterdir() if q.suffix.lower() in suffixes)
            if not found:
                raise StemError(f"{p}: the folder holds no audio files "
                                f"({', '.join(suffixes)}): put the stems there")
            paths.extend(found)
        else:
            paths.append(p)
    if not paths:
        raise StemError("no input stems: set backend.inputs to a folder or a list of WAV files")
    return paths


def probe_stems(paths, *, mono: bool = False,
                same_length: bool = False) -> tuple[int, int, list[int]]:
    """Check every stem; return (sample rate, frames of the longest, channels per stem).

    ``mono``: every stem must have one channel; ``same_length``: every stem the same number
    of frames (otherwise shorter stems are padded with silence by :class:`StemSource`)."""
    import soundfile as sf
    rate = None
    first = None
    chans = []
    longest = 0
    for p in paths:
        p = pathlib.Path(p)
        if not p.exists():
            raise StemError(f"{p}: no such file: check the path in backend.inputs")
        try:
            info = sf.info(str(p))
        except Exception as e:
            msg = str(e).splitlines()[0] if str(e) else e.__class__.__name__
            raise StemError(f"{p}: not a readable audio file ({msg}): re-export it as WAV") from None
        if info.frames <= 0:
            raise StemError(f"{p}: has no audio frames (empty file): remove it or re-export it")
        if rate is None:
            rate, first = info.samplerate, p
        elif info.samplerate != rate:
            raise StemError(f"{p}: {info.samplerate} Hz but {first.name} is {rate} Hz: "
                            "resample the stems to one rate")
        if chans and info.channels != chans[0]:
            raise StemError(f"{p}: {info.channels} channel(s) but {first.name} has {chans[0]}: "
                            "do not mix mono and stereo stems, split stereo stems into mono "
                            "files (one per input)")
        if mono and info.channels != 1:
            raise StemError(f"{p}: {info.channels} channels: export mono stems (one file "
                            "per channel)")
        if same_length and longest and info.frames != longest:
            raise StemError(f"{p}: {info.frames} frames but {first.name} has {longest}: "
                            "trim or pad the stems to one length")
        chans.append(info.channels)
        longest = max(longest, info.frames)
    return rate, longest, chans


class StemSource:
    """Serve the stems as one ``(frames, inputs)`` stream, reading ahead in chunks."""

    def __init__(self, paths, chunk_frames: int = 16384, *, mono: bool = False,
                 same_length: bool = False):
        import soundfile as sf
        self.paths = [pathlib.Path(p) for p in paths]
        self.sample_rate_hz, self.total_frames, chans = probe_stems(
            self.paths, mono=mono, same_length=same_length)
        self.n_channels = int(sum(chans))
        self._files = [sf.SoundFile(str(p)) for p in self.paths]
        self._chans = chans
        self._chunk = np.zeros((chunk_frames, self.n_channels), np.float32)
        self._have = 0
        self._at = 0
        self.pos = 0

    def _fill(self) -> None:
        n = min(self._chunk.shape[0], self.total_frames - self.pos)
        self._chunk[:n] = 0.0
        col = 0
        for f, c in zip(self._files, self._chans):
            data = f.read(n, dtype="float32", always_2d=True)
            self._chunk[:data.shape[0], col:col + c] = data
            col += c
        self._have, self._at = n, 0

    def read(self, out: np.ndarray) -> int:
        """Fill ``out`` (``(frames, n_channels)``); return frames filled (0 = end)."""
        want = min(out.shape[0], self.total_frames - self.pos)
        done = 0
        while done < want:
            if self._at >= self._have:
                self._fill()
                if self._have == 0:
                    break
            k = min(want - done, self._have - self._at)
            out[done:done + k] = self._chunk[self._at:self._at + k]
            self._at += k
            done += k
        self.pos += done
        return done

    def close(self) -> None:
        for f in self._files:
            f.close()


def _stem_file_name(index: int, name: str) -> str:
    """``NN_name.wav`` for console channel ``index`` (0-based): letters, digits, ``-`` and
    ``_`` only, and no second number when the name already starts with it."""
    safe = "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in name).strip("_")
    prefix = f"{index + 1:02d}_"
    return (safe if safe.startswith(prefix) else prefix + (safe or "channel")) + ".wav"


class OfflineBackend(Backend):
    """Pull blocks from ``source`` (StemSource or SyntheticSource), write the mix to ``output``.

    ``input_map[i]`` is the 1-based source input feeding console channel ``i``.  The control
    path runs on this backend's thread, between blocks, at audio time (``drives_control``).
    """

    name = "offline"
    #: The runner does not start a wall-clock control thread: this backend calls
    #: ``runner.step_control()`` before every block.  Set it False on an instance (with
    #: ``paced=True``) to exercise the live arrangement, a control thread on the wall clock.
    drives_control = True

    def __init__(self, source, sample_rate_hz: float, block_size: int, *, output=None,
                 paced: bool = False, input_map=None, stems_dir=None, stem_names=None):
        n_src = source.n_channels
        input_map = list(input_map) if input_map is not None else list(range(1, n_src + 1))
        if max(input_map) > n_src:
            raise DeviceError(f"the session reads input {max(input_map)} but the source has "
                              f"{n_src} inputs: fix channels[].input or add stems")
        super().__init__(len(input_map), sample_rate_hz, block_size)
        if int(source.sample_rate_hz) != int(sample_rate_hz):
            raise DeviceError(f"the stems are {int(source.sample_rate_hz)} Hz but the session "
                              f"is {int(sample_rate_hz)} Hz: set session.sample_rate_hz = "
                              f"{int(source.sample_rate_hz)} or resample the stems")
        self.source = source
        self.output = output
        self.paced = paced
        self.input_map = input_map
        self._identity = input_map == list(range(1, n_src + 1))
        self._thread = None
        self._stop = threading.Event()
        self.wav = None
        self.frames_out = 0
        self.stems_dir = pathlib.Path(stems_dir) if stems_dir else None
        names = list(stem_names) if stem_names is not None else [
            f"ch{i + 1}" for i in range(self.n_inputs)]
        if len(names) != self.n_inputs:
            raise ValueError(f"{len(names)} stem names for {self.n_inputs} channels")
        self.stem_paths = [] if self.stems_dir is None else [
            self.stems_dir / _stem_file_name(i, n) for i, n in enumerate(names)]
        self._stem_wavs = []

    def open(self, runner) -> None:
        super().open(runner)
        b = self.block_size
        self._src_block = np.zeros((b, self.source.n_channels), np.float32)
        self._x = np.zeros((b, self.n_inputs), np.float32)
        self._y = np.zeros((b, 2), np.float32)
        if self.output:
            import soundfile as sf
            try:
                pathlib.Path(self.output).parent.mkdir(parents=True, exist_ok=True)
                self.wav = sf.SoundFile(str(self.output), "w", int(self.sample_rate_hz), 2,
                                        subtype="FLOAT", format="WAV")
            except (OSError, RuntimeError) as e:
                raise DeviceError(f"{self.output}: cannot write the mix ({e}): choose a "
                                  "writable path for backend.output") from None
        if self.stems_dir is not None:
            import soundfile as sf
            self._direct = np.zeros((b, self.n_inputs, 2), np.float32)
            try:
                self.stems_dir.mkdir(parents=True, exist_ok=True)
                for p in self.stem_paths:
                    self._stem_wavs.append(sf.SoundFile(str(p), "w", int(self.sample_rate_hz),
                                                        2, subtype="FLOAT", format="WAV"))
            except (OSError, RuntimeError) as e:
                self._close_stems()
                raise DeviceError(f"{self.stems_dir}: cannot write the stems ({e}): choose a "
                                  "writable folder for backend.stems_dir") from None
            runner.console.set_direct_outs(self._direct)

    def start(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._work, name="edgemix-offline", daemon=True)
        self._thread.start()

    def _work(self) -> None:
        b = self.block_size
        cols = np.asarray(self.input_map, dtype=np.int64) - 1
        period = b / self.sample_rate_hz
        t_next = time.monotonic()
        while not self._stop.is_set():
            n = self.source.read(self._src_block)
            if n == 0:
                break
            x = self._src_block if self._identity else np.ascontiguousarray(
                self._src_block[:, cols])
            if n < b:  # the last, short block: process exactly n frames
                x = np.ascontiguousarray(x[:n])
                y = np.zeros((n, 2), np.float32)
            else:
                np.copyto(self._x, x)
                x, y = self._x, self._y
            if self.drives_control:  # the hops the input has reached, before this block
                self.runner.step_control()
            self.runner.process(x, y)
            if self.wav is not None:
                self.wav.write(y)
            for c, wav in enumerate(self._stem_wavs):
                wav.write(np.ascontiguousarray(self._direct[:n, c]))
            self.frames_out += n
            if self.paced:
                t_next += period
                delay = t_next - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
        self.finished = True

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def _close_stems(self) -> None:
        for wav in self._stem_wavs:
            wav.close()
        self._stem_wavs = []

    def close(self) -> None:
        if self.wav is not None:
            self.wav.close()
            self.wav = None
        if self.stems_dir is not None and self.runner is not None:
            self.runner.console.set_direct_outs(None)
        self._close_stems()
        close = getattr(self.source, "close", None)
        if close is not None:
            close()

    def info(self) -> dict:
        d = super().info()
        d.update(output=str(self.output) if self.output else None, paced=self.paced,
                 frames_out=self.frames_out,
                 stems=[str(p) for p in self.stem_paths] if self.stem_paths else None)
        return d
