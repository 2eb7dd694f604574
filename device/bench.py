"""``deepkeys bench``: speed figures measured on the machine it runs on.

Benchmarks print figures; they never pass or fail. The README's tables come from
these commands.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .card import load_card
from .encoding import notes_to_voice
from .generator import Generator
from .midifile import Melody, read_melody
from .models import card_path

BENCH_MELODY = Path(__file__).parent / "melodies" / "ode_to_joy.mid"


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
    invoke_s: list[float] = field(default_factory=list)
    generate_s: list[float] = field(default_factory=list)


def bench_generate(genre: str, runs: int = 200, threads: int = 1,
                   models: str | Path | None = None) -> GenerateBench:
    path = card_path(genre, models)
    generator = Generator(load_card(path), threads=threads)
    card = generator.card
    melody = read_melody(BENCH_MELODY)
    pitch, onset = notes_to_voice(melody.notes, melody.n_steps)
    noise = np.random.default_rng(0).standard_normal(card.inputs["noise"].shape[-1]).astype(
        np.float32)
    result = GenerateBench(genre, path, melody, pitch[: card.steps], onset[: card.steps], noise)

    for _ in range(10):  # warm-up: first invokes allocate and pack weights
        generator.infer(result.phrase_pitch, result.phrase_onset, noise)
    for i in range(runs):
        t0 = time.perf_counter()
        generator.infer(result.phrase_pitch, result.phrase_onset, noise)
        t1 = time.perf_counter()
        generator.accompany(melody.notes, melody.n_steps, seed=i)
        t2 = time.perf_counter()
        result.invoke_s.append(t1 - t0)
        result.generate_s.append(t2 - t1)

    bars = melody.n_steps // 16
    print(f"bench generate: genre={genre} model={path} threads={threads} runs={runs}")
    print(f"| what | median ms | p95 ms |\n|---|---|---|")
    med, p95 = percentiles(result.invoke_s)
    print(f"| int8 LiteRT, one {card.bars}-bar phrase (quantize + invoke + dequantize) "
          f"| {med:.2f} | {p95:.2f} |")
    med, p95 = percentiles(result.generate_s)
    print(f"| int8 LiteRT, full generation of a {bars}-bar melody (phrases + decoding) "
          f"| {med:.2f} | {p95:.2f} |")
    return result
