"""The audio thread: render a period from the synth, write it to ALSA, repeat.

One thread owns the PCM and the synth's render side. Each period it waits until
the device has room for a whole period, then takes the sequencer's events for the
block, renders it (queued live MIDI first) and writes it, which no longer blocks.
Waiting first and rendering second matters: a loop that renders and then blocks
in ``PCM.write`` holds each block a whole period before the device takes it, and
a key pressed meanwhile waits for the block after. Measured through the HIL rig
(``deepkeys bench e2e``), waiting first took one period off key-to-sound.
Underruns are recovered and counted; so are write errors.

>>> with AudioOutput(synth, sequencer, device="default") as out:   # doctest: +SKIP
...     synth.noteon(60, 100)                  # heard within about one period
...     time.sleep(1.0)
>>> out.stats().underruns                                         # doctest: +SKIP
0

ALSA devices that work without a sound card: ``null`` (never blocks: pass
``pace=True`` to play it at real-time speed), ``file:FILE=/tmp/out.wav,FORMAT=wav``
(captures exactly what was written; the WAV is complete once stopped), and
``plug:jack`` through a running JACK server (real-time pace, real underruns).
"""

from __future__ import annotations

import logging
import os
import select
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from deepkeys.device.adapters.synth import BlockEvent, LiveEvent, Synth
from deepkeys.device.errors import UserError

if TYPE_CHECKING:
    from deepkeys.device.config import Config

log = logging.getLogger(__name__)

RT_PRIORITY = 70  # SCHED_FIFO priority of the audio thread (1..99)
TIMING_WINDOW = 4096  # render times kept for the stats (about 11 s at 128 frames)
REOPEN_AFTER = 8  # consecutive write errors before the PCM is reopened
# The audio thread is Python: it needs the GIL once a block (after the write, which
# releases it). CPython makes a waiting thread wait up to the switch interval (5 ms by
# default) while another thread runs pure Python: longer than a 2 x 128 frame buffer.
# Measured here with a busy Python thread: 5 ms gave 263 underruns in 6 s and a p99
# key-to-audio of 12.8 ms; 0.5 ms gave none and 3.2 ms.
SWITCH_INTERVAL_S = 0.0005


def never_blocks(device: str) -> bool:
    """ALSA PCMs that take samples as fast as they come: ``null``, and the ``file`` plugin
    (which writes onto null). Played unpaced they would spin a core and run ahead of time.

    >>> never_blocks("null"), never_blocks("file:FILE=/tmp/x.wav,FORMAT=wav"), never_blocks("hw:0")
    (True, True, False)
    """
    return device == "null" or device.startswith("file:") or "null" in device.split(",")[-1]


def open_pcm(device: str, rate: int, periodsize: int, periods: int) -> Any:
    """An ALSA playback PCM, 16-bit stereo; a device that will not open is one UserError line."""
    try:
        import alsaaudio
    except ImportError:
        raise UserError("pyalsaaudio is not installed (pip install pyalsaaudio)") from None
    try:
        # By keyword: pyalsaaudio's positional order is not the obvious one.
        return alsaaudio.PCM(
            type=alsaaudio.PCM_PLAYBACK,
            mode=alsaaudio.PCM_NORMAL,
            device=device,
            rate=rate,
            channels=2,
            format=alsaaudio.PCM_FORMAT_S16_LE,
            periodsize=periodsize,
            periods=periods,
        )
    except alsaaudio.ALSAAudioError as exc:
        raise UserError(f"audio device {device!r}: cannot open it ({exc})") from None


@dataclass(slots=True)
class BlockInfo:
    """What one block held, handed to the ``on_block`` hook once the block is
    written (one object, reused: copy what you keep). Times are
    ``time.monotonic()`` seconds."""

    sample: int = 0  # stream position of the block's first frame
    frames: int = 0
    t_start: float = 0.0  # the block's render began (queued MIDI taken up to here)
    t_rendered: float = 0.0  # the block's samples were ready to write
    live: list[LiveEvent] = field(default_factory=list)  # (status, ch, d1, d2, t_queued)
    events: list[BlockEvent] = field(default_factory=list)  # the sequencer's, with offsets


@dataclass(frozen=True, slots=True)
class AudioStats:
    device: str
    rate: int
    period: int  # frames per block, as the device granted it
    buffer: int  # frames in the device buffer
    periods_written: int
    underruns: int
    errors: int
    realtime: bool  # SCHED_FIFO granted
    last_block_t: float  # monotonic time the last block was rendered (0 before the first)
    render_ms_mean: float
    render_ms_p99: float
    render_ms_max: float


class AudioOutput:
    """Plays a :class:`Synth` (and optionally a :class:`Sequencer`) on an ALSA PCM.

    ``periodsize`` and ``periods`` are asked for; the device may grant others
    (``stats().period``), and blocks are rendered one granted period each.
    ``realtime`` asks for SCHED_FIFO on the audio thread and runs without it
    when refused. ``pace`` sleeps as a sound card would consume, for devices that
    never block (``null``). ``before_render()`` runs on the audio thread once the
    device has room, just before each render (the daemon takes the keys that have
    just come there); ``on_block(info)`` runs after each render. Both must be
    quick. While running, the interpreter's GIL switch interval is lowered to
    ``switch_interval`` (None leaves it alone).
    """

    def __init__(
        self,
        synth: Synth,
        sequencer: Any | None = None,
        device: str = "default",
        periodsize: int = 128,
        periods: int = 2,
        realtime: bool = True,
        priority: int = RT_PRIORITY,
        pace: bool = False,
        on_block: Callable[[BlockInfo], Any] | None = None,
        before_render: Callable[[], Any] | None = None,
        switch_interval: float | None = SWITCH_INTERVAL_S,
    ) -> None:
        self.synth = synth
        self.sequencer = sequencer
        self.device = device
        self.rate = synth.rate
        self.periodsize = periodsize
        self.periods = periods
        self.realtime = realtime
        self.priority = priority
        self.pace = pace
        self.on_block = on_block
        self.before_render = before_render
        self.switch_interval = switch_interval
        self._saved_interval: float | None = None

        self.period = periodsize
        self.buffer = periodsize * periods
        self.sample = 0  # frames rendered since start
        self.periods_written = 0
        self.underruns = 0
        self.errors = 0
        self.last_block_t = 0.0
        self.rt_granted = False
        self._times = np.zeros(TIMING_WINDOW)
        self._n_times = 0
        self._pcm: Any = None
        self._alsa_error: type[Exception] = Exception
        self._failures = 0  # consecutive write errors
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._info = BlockInfo()
        self._pace_t0: float | None = None
        self._pace_written = 0.0
        self._poller: Any = None  # select.poll over the PCM's descriptors

    @classmethod
    def from_config(
        cls,
        cfg: Config,
        synth: Synth,
        sequencer: Any | None = None,
        device: str | None = None,
        **options: Any,
    ) -> AudioOutput:
        """The configured device (or ``device``), its period and periods; paced where it
        :func:`never_blocks`. ``options`` go to the constructor (hooks, realtime...)."""
        a = cfg.audio
        device = device or a.device
        return cls(
            synth,
            sequencer,
            device=device,
            periodsize=a.period,
            periods=a.periods,
            pace=never_blocks(device),
            **options,
        )

    # ---------------------------------------------------------------- control
    def start(self) -> AudioOutput:
        """Open the PCM (errors surface here, as UserError) and start the thread."""
        if self._thread is not None:
            raise RuntimeError("audio output already started")
        self._pcm = self._open()
        if self.switch_interval is not None and sys.getswitchinterval() > self.switch_interval:
            self._saved_interval = sys.getswitchinterval()
            sys.setswitchinterval(self.switch_interval)
            log.info("audio gil_switch_interval_ms=%g", self.switch_interval * 1e3)
        self._stop.clear()
        self._pace_t0 = None
        self._thread = threading.Thread(target=self._run, name="deepkeys-audio", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop the thread and close the PCM (a file PCM is complete after this)."""
        if self._thread is None:
            return
        self._stop.set()
        self._thread.join(timeout=5.0)
        stuck = self._thread.is_alive()  # a write that never returns: leave its PCM be
        self._thread = None
        if self._pcm is not None and not stuck:
            self._pcm.close()
            self._pcm = None
        if self._saved_interval is not None:
            sys.setswitchinterval(self._saved_interval)
            self._saved_interval = None

    @property
    def queued_s(self) -> float:
        """What still plays before a block just rendered: blocks are rendered once the
        device has room for one, so the rest of the buffer is queued ahead of it."""
        return (self.buffer - self.period) / self.rate

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def __enter__(self) -> AudioOutput:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def wait_periods(self, n: int, timeout: float = 10.0) -> bool:
        """Block until ``n`` periods in all have been written; False on timeout."""
        deadline = time.monotonic() + timeout
        while self.periods_written < n:
            if time.monotonic() > deadline or not self.running:
                return self.periods_written >= n
            time.sleep(0.001)
        return True

    def stats(self) -> AudioStats:
        n = min(self._n_times, TIMING_WINDOW)
        ms = self._times[:n] * 1e3
        return AudioStats(
            device=self.device,
            rate=self.rate,
            period=self.period,
            buffer=self.buffer,
            periods_written=self.periods_written,
            underruns=self.underruns,
            errors=self.errors,
            realtime=self.rt_granted,
            last_block_t=self.last_block_t,
            render_ms_mean=float(ms.mean()) if n else 0.0,
            render_ms_p99=float(np.percentile(ms, 99)) if n else 0.0,
            render_ms_max=float(ms.max()) if n else 0.0,
        )

    # ---------------------------------------------------------------- the thread
    def _open(self) -> Any:
        import alsaaudio

        pcm = open_pcm(self.device, self.rate, self.periodsize, self.periods)
        self._alsa_error = alsaaudio.ALSAAudioError
        info = pcm.info()
        if info["rate"] != self.rate or info["channels"] != 2:
            pcm.close()
            raise UserError(
                f"audio device {self.device!r}: got {info['rate']} Hz x {info['channels']} "
                f"channels, need {self.rate} x 2 (try plug:{self.device})"
            )
        self.period, self.buffer = int(info["period_size"]), int(info["buffer_size"])
        self._poller = select.poll()
        for fd, mask in pcm.polldescriptors():
            self._poller.register(fd, mask)
        log.info(
            "audio device=%s rate=%d period=%d buffer=%d buffer_ms=%.2f",
            self.device,
            self.rate,
            self.period,
            self.buffer,
            self.buffer / self.rate * 1e3,
        )
        return pcm

    def _go_realtime(self) -> None:
        if not self.realtime:
            log.info("audio realtime=off reason=disabled")
            return
        try:
            # pid 0 is this thread on Linux: only the audio thread gets FIFO.
            os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(self.priority))
        except (OSError, AttributeError) as exc:
            log.warning("audio realtime=off reason=%s", str(exc).replace(" ", "_") or "refused")
        else:
            self.rt_granted = True
            log.info("audio realtime=fifo priority=%d", self.priority)

    def _run(self) -> None:
        self._go_realtime()
        synth, sequencer, info = self.synth, self.sequencer, self._info
        no_events: list[BlockEvent] = []
        while not self._stop.is_set():
            frames = self.period  # a reopened device may grant another period
            try:
                self._wait_for_room(frames)
                if self.before_render is not None:
                    self.before_render()
                t0 = time.monotonic()
                events = sequencer.events_for_block(self.sample, frames) if sequencer else no_events
                block = synth.render(frames, events)
                t1 = time.monotonic()
                self._times[self._n_times % TIMING_WINDOW] = t1 - t0
                self._n_times += 1
                self.last_block_t = t1
                sample = self.sample
                self.sample += frames
                self._write(block)  # first: a slow hook must not delay the sound
                if self.on_block is not None:
                    info.sample, info.frames, info.t_start, info.t_rendered = sample, frames, t0, t1
                    info.live, info.events = synth.last_live, events
                    self.on_block(info)
            except Exception as exc:
                self.errors += 1
                if self.errors == 1 or self.errors % 1000 == 0:
                    log.error(
                        "audio error=%s count=%d", type(exc).__name__, self.errors, exc_info=True
                    )
                time.sleep(frames / self.rate)

    def _wait_for_room(self, frames: int) -> None:
        """Block until the device takes ``frames`` without waiting, as late as we can.

        Polls the PCM's own descriptors (the ``jack`` plugin and real cards wake them
        as each period drains). Returns early on an underrun or any error, which the
        write then meets and recovers, and after a silent timeout, so a device that
        stopped still reaches the write's error handling.
        """
        if self.pace:
            self._pace_wait()
            return
        pcm, poller = self._pcm, self._poller
        timeout_ms = max(5, int(4 * self.buffer / self.rate * 1e3))
        while not self._stop.is_set():
            try:
                avail = pcm.avail()
            except self._alsa_error:
                return
            if avail < 0 or avail >= frames or poller is None:
                return
            ready = poller.poll(timeout_ms)
            if not ready:
                return
            pcm.polldescriptors_revents(ready)  # lets the plugin clear its wake-up

    def _write(self, block: np.ndarray) -> None:
        data = block
        retried = False
        while len(data):
            try:
                written = self._pcm.write(data)
            except self._alsa_error as exc:
                # A broken stream (device gone, bad state): drop it so the next write
                # re-prepares; reopen if that keeps failing.
                self.underruns += 1
                self._write_error(exc)
                return
            if written < 0:  # -EPIPE: underrun; pyalsaaudio has re-prepared the PCM
                self.underruns += 1
                if retried:
                    return
                retried = True
                continue  # that write did not happen: write the same data again
            if written == 0:
                time.sleep(0.0005)  # only in non-blocking mode: wait for room
                continue
            data = data[written:]
        self.periods_written += 1
        self._failures = 0

    def _write_error(self, exc: Exception) -> None:
        self.errors += 1
        self._failures += 1
        if self._failures == 1:
            log.warning("audio write_error=%s device=%s", str(exc).replace(" ", "_"), self.device)
        try:
            self._pcm.drop()
        except Exception:
            pass
        if self._failures >= REOPEN_AFTER:
            time.sleep(0.5)  # a USB card unplugged: do not spin
            try:
                self._pcm.close()
                self._pcm = self._open()
                self._failures = 0
            except (UserError, self._alsa_error) as err:
                log.warning("audio reopen_failed=%s", str(err).replace(" ", "_"))

    def _pace_wait(self) -> None:
        """Sleep as a sound card with this buffer would make a blocking write wait,
        and count an underrun where such a card would have run dry."""
        now = time.monotonic()
        period_s, buffer_s = self.period / self.rate, self.buffer / self.rate
        if self._pace_t0 is None or now - self._pace_t0 > self._pace_written:
            if self._pace_t0 is not None:
                self.underruns += 1
            self._pace_t0, self._pace_written = now, 0.0
        wake = self._pace_t0 + self._pace_written + period_s - buffer_s
        if wake > now:
            time.sleep(wake - now)
        self._pace_written += period_s
