"""An in-process live rig for the web surface's tests and benchmarks: a console playing
noise at the audio clock's pace on its own thread, publishing its meters through the
shared-memory block, a desk that stages into the console, and the control surface with
the web server (real aiohttp, real sockets) on its own thread.  Only the process layout
is collapsed: the pieces are the ones `edgemix run` uses."""
from __future__ import annotations

import threading
import time

import numpy as np

from edgemix.console import Console
from edgemix.roles import ROLE_BY_NAME
from edgemix.rt.desk import Desk
from edgemix.rt.meter_shm import MeterReader, MeterWriter
from edgemix.rt.surface import Surface
from edgemix.rt.web.server import WebServer

FS = 48000
BLOCK = 256
ROLES = ("kick", "snare", "bass", "guitar", "keys_piano", "lead_vocal", "backing_vocal",
         "other")


class Rig:
    def __init__(self, n_channels: int = 4, host: str = "127.0.0.1", *, token=None,
                 scenes_dir=None):
        n = n_channels
        self.n = n
        self.console = Console(FS, BLOCK, n, 2)
        self.console.warmup()  # compile before the stream, as the runner does
        self.writer = MeterWriter(self.console)
        self.writer.warmup()
        roles = [ROLES[i % len(ROLES)] for i in range(n)]
        self.desk = Desk(n, names=[f"in_{i + 1:02d}" for i in range(n)], roles=roles,
                         colours=[ROLE_BY_NAME[r].colour_hex for r in roles],
                         stage=self.console.stage)
        scenes = None
        if scenes_dir is not None:
            from edgemix.rt.scenes import SceneStore
            scenes = SceneStore(self.desk, scenes_dir)
        self.surface = Surface(self.desk, scenes=scenes,
                               meters=MeterReader(self.writer.name, n))
        self.server = WebServer(host, 0, token=token)
        self.surface.add_server(self.server)
        self._stop = threading.Event()
        self._audio = threading.Thread(target=self._play, name="rig-audio", daemon=True)

    def _play(self):
        """Noise with a slow swell per channel, one block per block period."""
        rng = np.random.default_rng(1)
        out = np.zeros((BLOCK, 2), np.float32)
        k = 0
        t_next = time.perf_counter()
        while not self._stop.is_set():
            swell = 0.06 + 0.05 * np.sin(2 * np.pi * 0.7 * k * BLOCK / FS + np.arange(self.n))
            x = (rng.standard_normal((BLOCK, self.n)) * swell).astype(np.float32)
            self.console.process(x, out=out)
            self.writer.publish()
            k += 1
            t_next += BLOCK / FS
            time.sleep(max(0.0, t_next - time.perf_counter()))

    def start(self) -> "Rig":
        self._audio.start()
        self.url = self.surface.start()[0]
        return self

    def call(self, fn, *args):
        """Run ``fn(*args)`` on the surface loop and wait for its result."""
        import asyncio
        import concurrent.futures
        fut = concurrent.futures.Future()

        def run():
            try:
                r = fn(*args)
                if asyncio.iscoroutine(r):
                    task = asyncio.ensure_future(r)
                    task.add_done_callback(lambda t: fut.set_result(t.result()))
                else:
                    fut.set_result(r)
            except Exception as e:
                fut.set_exception(e)
        self.surface.call(run)
        return fut.result(10)

    def stop(self):
        self.surface.stop()
        self._stop.set()
        self._audio.join(5)
        self.surface.meters.close()
        self.writer.close()
