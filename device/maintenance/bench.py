"""``deepkeys bench``: speed figures measured on the machine it runs on.

Benchmarks print figures; they never pass or fail. The README's tables come from
these commands.
"""

from __future__ import annotations

import dataclasses
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from deepkeys.device.adapters.audio import never_blocks
from deepkeys.device.config import Config
from deepkeys.device.encoding import Composition, Melody, Note, Track, notes_to_voice
from deepkeys.device.generation.card import load_card
from deepkeys.device.generation.generator import Generator, chord_input
from deepkeys.device.generation.library import card_path
from deepkeys.device.generation.midifile import read_melody
from deepkeys.device.gm import NOTE_ON
from deepkeys.device.resources import BUNDLED_MELODIES

BENCH_MELODY = BUNDLED_MELODIES / "ode_to_joy.mid"


def percentiles(samples_s: list[float]) -> tuple[float, float]:
    """Median and p95 in milliseconds."""
    ms = np.asarray(samples_s) * 1e3
    return float(np.median(ms)), float(np.percentile(ms, 95))


@dataclass
class GenerateBench:
    genre: str
    card_path: Path
    melody: Melody
    phrase_pitch: np.ndarray  # the first phrase, as the model sees it
    phrase_onset: np.ndarray
    noise: np.ndarray
    phrase_chords: np.ndarray  # (steps, 37): the harmony step's chords for that phrase
    invoke_s: list[float] = field(default_factory=list)
    generate_s: list[float] = field(default_factory=list)


def bench_generate(
    genre: str, runs: int = 200, threads: int = 1, models: str | Path | None = None
) -> GenerateBench:
    path = card_path(genre, models)
    generator = Generator(load_card(path), threads=threads)
    card = generator.card
    melody = read_melody(BENCH_MELODY)
    pitch, onset = notes_to_voice(melody.notes, melody.n_steps)
    noise = (
        np.random.default_rng(0).standard_normal(card.inputs["noise"].shape[-1]).astype(np.float32)
    )
    chords = chord_input(generator.harmonizer.harmonize(pitch, onset), melody.n_steps)
    phrase = slice(0, card.steps)
    result = GenerateBench(genre, path, melody, pitch[phrase], onset[phrase], noise, chords[phrase])

    for _ in range(10):  # warm-up: first invokes allocate and pack weights
        generator.infer(result.phrase_pitch, result.phrase_onset, noise, result.phrase_chords)
    for i in range(runs):
        t0 = time.perf_counter()
        generator.infer(result.phrase_pitch, result.phrase_onset, noise, result.phrase_chords)
        t1 = time.perf_counter()
        generator.accompany(melody.notes, melody.n_steps, seed=i)
        t2 = time.perf_counter()
        result.invoke_s.append(t1 - t0)
        result.generate_s.append(t2 - t1)

    bars = melody.n_steps // 16
    print(f"bench generate: genre={genre} model={path} threads={threads} runs={runs}")
    print("| what | median ms | p95 ms |\n|---|---|---|")
    med, p95 = percentiles(result.invoke_s)
    print(
        f"| int8 LiteRT, one {card.bars}-bar phrase (quantize + invoke + dequantize) "
        f"| {med:.2f} | {p95:.2f} |"
    )
    med, p95 = percentiles(result.generate_s)
    print(
        f"| int8 LiteRT, full generation of a {bars}-bar melody (phrases + decoding) "
        f"| {med:.2f} | {p95:.2f} |"
    )
    return result


# --------------------------------------------------------------------------- audio


def _p99_ms(samples_s: list[float]) -> tuple[float, float]:
    """Median and p99 in milliseconds."""
    ms = np.asarray(samples_s) * 1e3
    return float(np.median(ms)), float(np.percentile(ms, 99))


def _bench_piece() -> Composition:
    """Two bars of drums, bass, comping and pad: the load a playing loop puts on the synth."""
    drums = [Note(42, s, s + 1, 80) for s in range(0, 32, 2)]
    drums += [Note(36, s, s + 1, 110) for s in (0, 8, 16, 24)]
    drums += [Note(38, s, s + 1, 100) for s in (4, 12, 20, 28)]
    bass = [Note(36 + (0, 7, 5, 7)[s // 8], s, s + 3, 100) for s in range(0, 32, 4)]
    chords = [Note(p, s, s + 6, 80) for s in (0, 8, 16, 24) for p in (60, 64, 67)]
    pad = [Note(p, 0, 32, 60) for p in (48, 55, 64)]
    return Composition(
        [
            Track("drums", 0, drums, is_drum=True),
            Track("bass", 33, bass, channel=1),
            Track("chords", 4, chords, channel=2),
            Track("pad", 48, pad, channel=3),
        ],
        32,
        120.0,
    )


@dataclass
class LatencyBench:
    device: str
    period: int  # frames, as the device granted them
    buffer: int
    latency_s: list[float] = field(default_factory=list)  # note-on read -> block rendered
    wait_s: list[float] = field(default_factory=list)  # note-on read -> its block began
    render_s: list[float] = field(default_factory=list)
    underruns: int = 0
    realtime: bool = False
    python_load: bool = False
    rate: int = 48000
    queued_s: float = 0.0  # still in the device buffer after a block, at the end


def bench_latency(
    notes: int = 500,
    period: int = 128,
    device: str = "null",
    periods: int = 2,
    python_load: bool = False,
) -> LatencyBench:
    """Key to audio: from a note-on read by the MIDI input (its ``sim`` backend) to the
    first rendered block that contains it, through the daemon's own :class:`KeyPath`,
    with an accompaniment looping. Prints the table and returns the samples.

    ``null`` never blocks, so it is paced like a sound card with the same buffer; any
    other ALSA device paces itself. ``python_load`` keeps another thread busy in pure
    Python meanwhile (as decoding a generation does), which is what makes the audio
    thread wait for the GIL.
    """
    result = measure_latency(notes, period, device, periods, python_load)
    print_latency(result)
    return result


def measure_latency(
    notes: int = 500,
    period: int = 128,
    device: str = "null",
    periods: int = 2,
    python_load: bool = False,
) -> LatencyBench:
    """The samples of :func:`bench_latency`, printing nothing."""
    import queue
    import random

    from deepkeys.device.adapters.audio import BlockInfo
    from deepkeys.device.appliance.keypath import KeyPath

    result = LatencyBench(device, period, period * periods, python_load=python_load)

    def on_block(info: BlockInfo) -> None:
        # Runs on the audio thread: appends only.
        result.render_s.append(info.t_rendered - info.t_start)
        for status, _ch, _note, velocity, t_queued in info.live:
            if status == NOTE_ON and velocity > 0:
                result.latency_s.append(info.t_rendered - t_queued)
                result.wait_s.append(info.t_start - t_queued)

    cfg = _latency_config(device, period, periods)
    events: queue.Queue = queue.Queue(maxsize=1024)  # the daemon's main-loop queue
    keys = KeyPath(cfg, events, on_block=on_block)
    rng = random.Random(0)
    with _Background(lambda stop: _drain(events, stop)), _Background(_busy, python_load):
        keys.start_audio()
        try:
            assert keys.seq is not None and keys.audio is not None
            keys.seq.play(_bench_piece())
            keys.audio.wait_periods(200)  # past start-up
            result.render_s.clear()
            keys.start_midi()
            assert keys.midi is not None
            for i in range(notes):
                note = 48 + (i * 7) % 36
                keys.midi.send([0x90, note, 100])
                # Random gaps, so notes arrive at every phase of a period.
                time.sleep(rng.uniform(0.003, 0.009))
                keys.midi.send([0x80, note, 0])
                time.sleep(rng.uniform(0.003, 0.009))
            keys.close_input()
            keys.audio.wait_periods(keys.audio.periods_written + 10)
            stats = keys.audio.stats()
            result.period, result.buffer = stats.period, stats.buffer
            result.underruns, result.realtime = stats.underruns, stats.realtime
            result.queued_s = keys.audio.queued_s
        finally:
            keys.close()
    return result


def print_latency(result: LatencyBench) -> None:
    """The table ``deepkeys bench latency`` prints."""
    paced = " (paced as a sound card)" if never_blocks(result.device) else ""
    print(
        f"bench latency: device={result.device}{paced} rate={result.rate} "
        f"period={result.period} periods={result.buffer // result.period} "
        f"notes={len(result.latency_s)} realtime={'fifo' if result.realtime else 'off'} "
        f"underruns={result.underruns} python_load={'on' if result.python_load else 'off'}"
    )
    print("| what | median ms | p99 ms |\n|---|---|---|")
    med, p99 = _p99_ms(result.latency_s)
    print(
        f"| key to audio: MIDI note-on read -> first rendered block with it "
        f"({result.period} frames) | {med:.2f} | {p99:.2f} |"
    )
    med, p99 = _p99_ms(result.wait_s)
    print(f"| of which waiting for the next block to begin | {med:.2f} | {p99:.2f} |")
    med, p99 = _p99_ms(result.render_s)
    print(f"| render one block (synth + 4-track loop) | {med:.3f} | {p99:.3f} |")
    print(
        f"target: p99 <= one period + 1 ms = {result.period / result.rate * 1e3 + 1:.2f} ms; "
        f"the rest of the device buffer then plays first: {result.queued_s * 1e3:.2f} ms"
    )


def _latency_config(device: str, period: int, periods: int) -> Config:
    """The hardware-free daemon config with the bench's device, at 120 BPM."""
    base = Config()
    return dataclasses.replace(
        base,
        midi=dataclasses.replace(base.midi, api="sim", virtual_port_name="bench"),
        audio=dataclasses.replace(base.audio, device=device, period=period, periods=periods),
        player=dataclasses.replace(base.player, tempo_bpm=120),
    )


def _drain(events: queue.Queue, stop: threading.Event) -> None:
    """What the daemon's main loop does to its queue, minus the state machine."""
    while not stop.is_set():
        try:
            events.get(timeout=0.05)
        except queue.Empty:
            pass


def _busy(stop: threading.Event) -> None:
    """Pure Python on another thread, holding the GIL as decoding a generation does."""
    x = 0
    while not stop.is_set():
        for i in range(10_000):
            x += i * i


class _Background:
    """``work(stop)`` on a daemon thread while the ``with`` block runs (if ``enabled``)."""

    def __init__(self, work: Callable[[threading.Event], None], enabled: bool = True) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=work, args=(self._stop,), daemon=True)
        self._enabled = enabled

    def __enter__(self) -> _Background:
        if self._enabled:
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._enabled:
            self._thread.join(timeout=5)


@dataclass
class SynthBench:
    voices: int  # active voices while rendering
    seconds: float
    x_realtime: float
    block_s: list[float] = field(default_factory=list)


def bench_synth(voices: int = 32, seconds: float = 10.0, period: int = 128) -> SynthBench:
    """How many times faster than real time the synth renders ``voices``
    simultaneous voices (with reverb), in ``period``-frame blocks on one core."""
    import os

    from deepkeys.device.adapters.synth import Synth

    synth = Synth(polyphony=max(64, 2 * voices))
    sustained = (19, 48, 52, 16)  # organ, strings, choir, organ: they hold while keys are down
    for channel, program in enumerate(sustained, start=1):
        synth.program_change(program, channel)
    i = 0
    while synth.active_voices() < voices and i < 128:
        synth.noteon(36 + (i * 5) % 60, 90, channel=1 + i % len(sustained))
        synth.render(period)
        i += 1

    blocks = int(seconds * synth.rate) // period
    times = [0.0] * blocks
    cpus = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {min(cpus)})  # one core, as on a busy Pi
    try:
        began = time.perf_counter()
        for b in range(blocks):
            t0 = time.perf_counter()
            synth.render(period)
            times[b] = time.perf_counter() - t0
        wall = time.perf_counter() - began
    finally:
        os.sched_setaffinity(0, cpus)
    active = synth.active_voices()
    synth.close()
    audio_s = blocks * period / synth.rate
    result = SynthBench(active, audio_s, audio_s / wall, times)

    print(
        f"bench synth: voices={active} seconds={audio_s:.1f} period={period} "
        f"rate={synth.rate} polyphony={max(64, 2 * voices)} reverb=on cores=1"
    )
    print("| what | x real time | block median ms | block p99 ms |\n|---|---|---|---|")
    med, p99 = _p99_ms(times)
    print(
        f"| FluidSynth, {active} voices, {period}-frame blocks, one core "
        f"| {result.x_realtime:.1f} | {med:.3f} | {p99:.3f} |"
    )
    print(
        f"target: >= 10x real time; a {period}-frame block is due every "
        f"{period / synth.rate * 1e3:.2f} ms"
    )
    return result


# --- start-up -------------------------------------------------------------------------
@dataclass
class StartupBench:
    ready_s: list[float] = field(default_factory=list)
    rss_mb: list[float] = field(default_factory=list)


def bench_startup(runs: int = 5, config: str | Path | None = None) -> StartupBench:
    """``deepkeys run`` as systemd starts it: seconds from exec to READY=1 on the notify
    socket, and the daemon's resident memory once ready (all installed models loaded).

    Without ``config`` it uses sim MIDI, the null audio device and mock pins, so it runs
    on any machine; on the Pi, pass the real config to include the hardware.
    """
    import os
    import signal
    import socket
    import subprocess
    import sys
    import tempfile

    from deepkeys.device.config import hardware_free_config

    result = StartupBench()
    for _ in range(runs):
        with tempfile.TemporaryDirectory() as tmp:
            cfg_path = Path(config) if config else Path(tmp) / "config.toml"
            if not config:
                cfg_path.write_text(hardware_free_config(f"{tmp}/state", f"{tmp}/ctl.sock"))
            notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            notify.bind(f"{tmp}/notify.sock")
            notify.settimeout(30)
            t0 = time.perf_counter()
            proc = subprocess.Popen(
                [sys.executable, "-m", "deepkeys.device.cli", "run", "--config", str(cfg_path)],
                env={**os.environ, "NOTIFY_SOCKET": f"{tmp}/notify.sock"},
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            try:
                while not notify.recv(4096).startswith(b"READY=1"):
                    pass
                result.ready_s.append(time.perf_counter() - t0)
                result.rss_mb.append(_rss_mb(proc.pid))
            finally:
                proc.send_signal(signal.SIGTERM)
                proc.wait(timeout=15)
                notify.close()

    described = config or "hardware-free (sim MIDI, null audio, mock pins)"
    print(f"bench startup: runs={runs} config={described}")
    print("| what | median | max |\n|---|---|---|")
    print(f"| start to READY (s) | {np.median(result.ready_s):.2f} | {max(result.ready_s):.2f} |")
    print(
        f"| RSS once ready, all models loaded (MB) | {np.median(result.rss_mb):.1f} "
        f"| {max(result.rss_mb):.1f} |"
    )
    print("targets: READY <= 2 s, RSS <= 150 MB")
    return result


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")
