"""``deepkeys bench e2e``: key to sound through the whole appliance, measured in JACK frames.

For each JACK period it starts a private ``jackd -d dummy``, the real daemon (its
ALSA period the same, 2 periods of buffer) and the rig's recorder. It plays
``notes`` short notes into the virtual keyboard port, at random gaps, and for each
one takes the frame it entered JACK (the recorder taps the port) and the frame its
sound begins, both counted in the recording (``capture.py``), so the figure does not
depend on Python's timing.

What to expect in this rig: JACK hands MIDI over once a cycle, at the cycle's
start, which is also when the ALSA ``jack`` plugin takes a period and wakes the
daemon's audio thread. A key sounds 2 periods later when it reaches the synth
before that render, 3 when it just misses it; the table counts both.

Where the sound begins is found by matching, not by a level threshold: each key is
first rendered offline by the same FluidSynth, SoundFont, program and gain as the
daemon's, from the note-on's own sample, and that waveform is located in the
recording (:func:`analysis.match_delay`). A piano sample that takes 10 ms to rise
would add those 10 ms to a threshold detector; a match finds its first sample.

    >>> rows = bench_e2e(periods=(64, 128), notes=200)      # doctest: +SKIP
    | JACK period (frames) | notes heard | p50 ms | p99 ms | max ms | notes by periods ...
"""

from __future__ import annotations

import dataclasses
import random
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from deepkeys.device.config import Config, load_config

from .analysis import match_delay
from .jackd import start_jackd
from .rig import Rig, RigOptions

KEYS = (48, 60, 72, 55, 67, 52, 64, 76)  # far apart: one key's tail is not the next one's onset
PROGRAM = 0  # the keys' default piano
VELOCITY = 100
NOTE_S = 0.03  # each key is held this long
TEMPLATE_S = 0.025  # the part of each note matched: shorter than the key is held
SEARCH_S = 0.08  # a note not found within this of its key is counted as not heard


@dataclass(frozen=True)
class E2eResult:
    period: int
    rate: int
    sent: int
    latency_ms: tuple[float, ...]  # one per note heard
    underruns: int  # the daemon's
    xruns: int = 0  # JACK cycles the recorder saw the clock jump (capture.JackRecorder.clock_jumps)

    def in_periods(self) -> dict[int, int]:
        """How many notes sounded after how many whole periods (rounded)."""
        period_ms = self.period / self.rate * 1e3
        counts: dict[int, int] = {}
        for ms in self.latency_ms:
            n = round(ms / period_ms)
            counts[n] = counts.get(n, 0) + 1
        return dict(sorted(counts.items()))

    @property
    def target_ms(self) -> float:
        """The issue's target: two periods plus 2 ms."""
        return 2 * self.period / self.rate * 1e3 + 2.0

    def row(self) -> str:
        ms = np.asarray(self.latency_ms)
        p50, p99, top = (
            (np.percentile(ms, 50), np.percentile(ms, 99), ms.max())
            if len(ms)
            else (float("nan"),) * 3
        )
        met = "yes" if p99 <= self.target_ms else "no"
        spread = ", ".join(f"{n}: {c}" for n, c in self.in_periods().items())
        return (
            f"| {self.period} ({self.period / self.rate * 1e3:.2f} ms) | {len(ms)}/{self.sent} "
            f"| {p50:.2f} | {p99:.2f} | {top:.2f} | {spread} | {self.target_ms:.2f} | {met} |"
        )


HEADER = (
    "| JACK period (frames) | notes heard | p50 ms | p99 ms | max ms "
    "| notes by periods of delay | target p99 (2 periods + 2 ms) | met |\n"
    "|---|---|---|---|---|---|---|---|"
)


def key_templates(config: Config, rate: int) -> dict[int, np.ndarray]:
    """Each of :data:`KEYS` as the daemon's synth plays it, offline, from its note-on on.

    Mono, as the recorder's mix; :data:`TEMPLATE_S` long.
    """
    from deepkeys.device.adapters.synth import Synth

    config = dataclasses.replace(config, audio=dataclasses.replace(config.audio, rate=rate))
    out = {}
    for key in KEYS:
        with Synth.from_config(config) as synth:
            synth.noteon(key, VELOCITY)
            block = synth.render(int(TEMPLATE_S * rate)).astype(np.float64)
        out[key] = block.mean(axis=1) / 32768
    return out


def measure(period: int, notes: int = 200, seed: int = 0) -> E2eResult:
    """One period size: a fresh JACK server and daemon, ``notes`` keys, their latencies."""
    server = start_jackd(period=period)
    rng = random.Random(seed)
    try:
        with tempfile.TemporaryDirectory(prefix="deepkeys-e2e-") as tmp:
            options = RigOptions(live_program=PROGRAM)
            with Rig(server, Path(tmp), options, name=f"e2e{period}") as rig:
                rig.start()
                time.sleep(0.5)  # past start-up
                rig.recorder.clear()
                for i in range(notes):
                    key = KEYS[i % len(KEYS)]
                    rig.keyboard.note_on(key, VELOCITY)
                    time.sleep(NOTE_S)
                    rig.keyboard.note_off(key)
                    time.sleep(rng.uniform(0.17, 0.23))
                time.sleep(0.3)
                audio, rate = rig.recorder.audio(), rig.recorder.rate
                underruns = rig.status().get("audio", {}).get("underruns", -1)
                tapped = rig.recorder.tapped()
                xruns = rig.recorder.clock_jumps
                config = load_config(rig.config_path)
    finally:
        server.stop()
    templates = key_templates(config, rate)
    latency = []
    for tap in tapped:
        start = tap.sample
        found = match_delay(audio, start, templates[tap.note], int(SEARCH_S * rate))
        if found is not None:
            latency.append((found[0] - start) / rate * 1e3)
    return E2eResult(period, rate, notes, tuple(latency), underruns, xruns)


def bench_e2e(
    periods: tuple[int, ...] = (64, 128), notes: int = 200, out: str | Path | None = None
) -> list[E2eResult]:
    """Measure each period, print the markdown table, and write it to ``out`` if given."""
    results = [measure(p, notes) for p in periods]
    lines = [
        f"bench e2e: key (note-on into JACK) -> onset in the captured audio; "
        f"jackd -d dummy at 48 kHz, daemon ALSA buffer 2 periods, {notes} notes each",
        HEADER,
        *(r.row() for r in results),
        "daemon underruns / JACK xruns during the runs: "
        + ", ".join(f"{r.period}: {r.underruns} / {r.xruns}" for r in results),
    ]
    text = "\n".join(lines) + "\n"
    print(text, end="")
    if out is not None:
        Path(out).write_text(text)
    return results
