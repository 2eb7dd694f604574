"""Handlers of the host-only subcommands: train, export, evaluate (and the float half
of ``bench generate``). The CLI imports this module only when one of them runs."""

from __future__ import annotations

import argparse
import shlex
import time
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from deepkeys.device.encoding import DEFAULT_DRUM_NOTES, voice_to_notes
from deepkeys.device.errors import UserError
from deepkeys.device.generation.card import ModelCard, load_card
from deepkeys.device.generation.generator import Generator, noise_vector
from deepkeys.device.generation.library import card_path

if TYPE_CHECKING:  # annotations only: each command imports the host's ML stack when it runs
    from deepkeys.host.data.windows import Windows

DEFAULT_RUNS = Path("runs")
BENCH_BATCH = 32  # bench workers: the style genres' batch, said in its table
EXPORT_SAMPLE = 4096  # training windows export reads from a prepared folder (calibration, centre)


def _run_dir(args: argparse.Namespace) -> Path:
    return args.run_dir or DEFAULT_RUNS / args.genre


def _data_args(args: argparse.Namespace) -> str:
    """The data options of a command line, quoted, for the exact command in a card."""
    words = []
    if getattr(args, "data", None):
        words += ["--data", shlex.quote(str(args.data))]
    if getattr(args, "melody_track", None):
        words += ["--melody-track", shlex.quote(args.melody_track)]
    return "".join(f" {w}" for w in words)


def train(args: argparse.Namespace) -> int:
    from deepkeys.host.train import train as run_training

    run_dir = _run_dir(args)
    # The card records this, so anyone can retrain the model exactly.
    overrides = {}
    adversarial = ""
    if args.adversarial_weight is not None:
        if not np.isfinite(args.adversarial_weight) or args.adversarial_weight < 0:
            raise UserError(f"--adversarial-weight must be >= 0, not {args.adversarial_weight}")
        overrides["adversarial_weight"] = args.adversarial_weight
        adversarial = f" --adversarial-weight {args.adversarial_weight:g}"
    command = (
        f"deepkeys train --genre {shlex.quote(args.genre)} --epochs {args.epochs} "
        f"--seed {args.seed}{adversarial}{_data_args(args)}"
        + (f" --workers {args.workers}" if args.workers > 1 else "")
    )
    best = run_training(
        args.genre,
        run_dir,
        args.epochs,
        args.seed,
        args.resume,
        command,
        tcfg_overrides=overrides,
        data_folder=args.data,
        melody_track=args.melody_track,
        workers=args.workers,
    )
    print(f"weights={best}\nlog={run_dir / 'log.jsonl'}\nplot={run_dir / 'training.png'}")
    return 0


def _dataset_text(genre: str, data_folder: Path | None) -> str:
    from deepkeys.host.data.mma import STYLES, mma_version
    from deepkeys.host.export import INSTRUMENTATION, MMA_DATASET

    if data_folder is not None:
        return (
            f"Your own MIDI files in {data_folder}: 4/4 phrases, tracks mapped by GM program "
            "family onto bass, comp, pad and drums; melody from the named track or the top "
            "monophonic line; split by file"
        )
    if genre in STYLES:
        style = STYLES[genre]
        return MMA_DATASET.format(
            mma=mma_version(),
            grooves=", ".join(style.grooves),
            swing=" (MMA's swung 8ths straightened; the card swings them back)"
            if style.swing
            else "",
        )
    return INSTRUMENTATION[genre]["dataset"]


def train_harmony(args: argparse.Namespace) -> int:
    import json

    from deepkeys.host.harmony.model import HarmonyConfig
    from deepkeys.host.harmony.train import train_harmony as run_training

    cfg = HarmonyConfig(epochs=args.epochs, seed=args.seed)
    command = f"deepkeys train-harmony --epochs {args.epochs} --seed {args.seed}"
    card = run_training(args.out, args.run_dir, cfg, command)
    print(json.dumps(card.provenance["test_metrics"], indent=1))
    print(f"model={card.model_path}\ncard={card.path}")
    return 0


def evaluate_harmony(args: argparse.Namespace) -> int:
    from deepkeys.host.harmony.evaluate import format_table, harmony_table

    for source in args.source or ["pop909"]:
        print(format_table(harmony_table(args.genre, args.phrases, args.models, source)))
    return 0


def export(args: argparse.Namespace) -> int:
    from deepkeys.host.data.sources import load_windows
    from deepkeys.host.data.windows import Windows
    from deepkeys.host.export import (
        INSTRUMENTATION,
        add_metrics,
        calibrate_thresholds,
        calibration_set,
        card_file,
        load_run,
        reuse,
        set_thresholds,
    )
    from deepkeys.host.export import export as run_export
    from deepkeys.host.train import read_log

    source = INSTRUMENTATION.get(args.genre, {}).get("reuses")
    if source:  # e.g. symphony: the chorale model with other instruments, no training
        card = reuse(load_card(card_path(source, str(args.out))), args.genre, args.out)
        print(f"model={card.model_path}\ncard={card.path}\nreuses={source}")
        return 0
    run_dir = _run_dir(args)
    if not (run_dir / "best.weights.h5").exists():
        raise UserError(
            f"{run_dir}: no trained weights (run 'deepkeys train --genre {args.genre}' first)"
        )
    config, cfg = load_run(run_dir)
    data_folder = args.data or _recorded_data(config)
    data = load_windows(args.genre, data_folder, args.melody_track, cfg.bars)
    train = data["train"]
    if not isinstance(train, Windows):  # a prepared folder's shards: a spread of them
        train = train.sample(EXPORT_SAMPLE, seed=0)
    train_melody = train.melody_pitch
    card = run_export(
        run_dir,
        args.genre,
        args.out,
        calibration_set(train, cfg),
        melody_center=int(np.median(train_melody[train_melody >= 0])),
        history=read_log(run_dir / "log.jsonl"),
        extra_provenance={},
        dataset=_dataset_text(args.genre, data_folder),
    )
    if any(t.kind != "mono" for t in card.tracks):
        card = set_thresholds(
            card_file(args.out, args.genre),
            calibrate_thresholds(card, float_model_of(card), data["validation"]),
        )
    f1 = int8_float_agreement(card, data["test"])
    table = evaluation(card, data["test"], seed=0)
    add_metrics(
        card_file(args.out, args.genre),
        {
            "test_split": table,
            "int8_vs_float_note_f1": round(f1, 4),
            "evaluate_command": f"deepkeys evaluate --genre {args.genre}{_data_args(args)}",
        },
    )
    print(f"model={card.model_path}\ncard={card.path}\nint8_vs_float_note_f1={f1:.3f}")
    return 0


def _recorded_data(config: dict) -> Path | None:
    """The --data folder a run was trained on, read back from its command."""
    words = shlex.split(config.get("command", ""))
    return Path(words[words.index("--data") + 1]) if "--data" in words else None


def kinds_of(card: ModelCard) -> dict[str, str]:
    return {t.name: t.kind for t in card.tracks}


def drum_notes_of(card: ModelCard) -> tuple[int, ...]:
    return next((t.drum_notes for t in card.tracks if t.kind == "drums"), DEFAULT_DRUM_NOTES)


def generated_parts(
    card: ModelCard, windows: Windows, seed: int = 0, temperature: float | None = None
) -> list[dict]:
    """The int8 model's accompaniment of every window's melody, as the device makes it."""
    generator = Generator(card)
    steps = windows.melody_pitch.shape[1]
    return [
        generator.accompany(
            voice_to_notes(windows.melody_pitch[i], windows.melody_onset[i]),
            steps,
            seed=seed + i,
            temperature=temperature,
        ).parts
        for i in range(len(windows))
    ]


def evaluation(
    card: ModelCard,
    windows: Windows,
    seed: int = 0,
    temperature: float | None = None,
    made: list[dict] | None = None,
) -> dict[str, dict[str, float]]:
    """The evaluate table: int8 generation (``made``, or generated here) vs real vs
    shuffled, on held-out windows."""
    from deepkeys.host.evaluate import evaluate_table

    table = evaluate_table(
        windows,
        kinds_of(card),
        lambda *_: made or generated_parts(card, windows, seed, temperature),
        drum_notes_of(card),
    )
    return {row: {k: round(v, 4) for k, v in vals.items()} for row, vals in table.items()}


def evaluate(args: argparse.Namespace) -> int:
    from deepkeys.host.data.sources import load_windows
    from deepkeys.host.evaluate import format_table, genre_confusion, library_table, quality_checks

    genres = args.genre
    tests, cards, tables, made = {}, {}, {}, {}
    for genre in genres:
        card = load_card(card_path(genre, args.models))
        data_genre = card.provenance.get("reuses", genre)  # symphony: the chorale data
        windows = load_windows(data_genre, args.data, args.melody_track, card.bars)["test"]
        made[genre] = generated_parts(card, windows, args.seed, args.temperature)
        table = evaluation(card, windows, made=made[genre])
        temperature = card.playback.temperature if args.temperature is None else args.temperature
        print(
            f"evaluate: genre={genre} model={card.model_path} windows={len(windows)} "
            f"(held-out melodies, {card.bars}-bar windows) temperature={temperature}"
        )
        print(format_table(table))
        if any(t.kind != "mono" for t in card.tracks):
            print(quality_checks(table))
        print()
        tests[genre], cards[genre], tables[genre] = windows, card, table
    if len(genres) > 1:
        print("Generated / data, per genre (held-out melodies):")
        print(library_table(tables))
        print()
        real = {g: true_parts_of(cards[g], tests[g]) for g in genres}
        print(genre_confusion(real, made))
    return 0


def true_parts_of(card: ModelCard, windows: Windows) -> list[dict]:
    from deepkeys.host.evaluate import true_parts

    return true_parts(windows, kinds_of(card), drum_notes_of(card))


def float_model_of(card: ModelCard, batch_size: int | None = None):
    """The float32 Keras generator shipped beside an int8 model."""
    from deepkeys.host.model import GeneratorConfig, build_generator

    weights = card.model_path.parent / card.provenance["float_weights"]
    if not weights.exists():
        raise UserError(f"{weights}: float weights missing; re-run 'deepkeys export'")
    model = build_generator(
        GeneratorConfig.from_json(card.provenance["generator"]), batch_size=batch_size
    )
    model.load_weights(weights)
    return model


def int8_float_agreement(card: ModelCard, windows: Windows) -> float:
    """Note-cell F1 between the int8 and the float model's decoded tracks, at temperature 0:
    the (track, step, pitch) cells both sound over those either sounds."""
    from deepkeys.host.evaluate import decode_outputs
    from deepkeys.host.model import GeneratorConfig

    cfg = GeneratorConfig.from_json(card.provenance["generator"])
    kinds, drum_notes = kinds_of(card), drum_notes_of(card)
    generator = Generator(card)
    model = float_model_of(card)
    noise = noise_vector(cfg.noise_dim, len(cfg.grooves), 0, np.random.default_rng(0))
    inputs = windows.inputs(cfg)
    melody = inputs["melody"]
    out = model.predict(
        {**inputs, "noise": np.tile(noise, (len(melody), 1))}, batch_size=64, verbose=0
    )
    thresholds = {t.name: t.threshold for t in card.tracks}
    float_parts = decode_outputs(
        out, kinds, cfg.pitch_low, drum_notes=drum_notes, thresholds=thresholds
    )
    both = either = 0
    for i in range(len(melody)):
        q = generator.infer(
            windows.melody_pitch[i], windows.melody_onset[i], noise, inputs["chords"][i]
        )
        int8_parts = decode_outputs(
            {k: v[None] for k, v in q.items()},
            kinds,
            cfg.pitch_low,
            drum_notes=drum_notes,
            thresholds=thresholds,
        )[0]
        a, b = _cells(int8_parts), _cells(float_parts[i])
        both += len(a & b)
        either += len(a) + len(b)
    return 2 * both / max(either, 1)


def _cells(parts: dict) -> set[tuple[str, int, int]]:
    return {
        (name, t, n.pitch)
        for name, notes in parts.items()
        for n in notes
        for t in range(n.start, n.end)
    }


def bench_float(result, runs: int) -> None:
    """The float32 Keras half of ``bench generate``: the same phrase, the same noise."""
    import tensorflow as tf

    from deepkeys.device.maintenance.bench import percentiles
    from deepkeys.host.model import GeneratorConfig, melody_tensor

    card = load_card(result.card_path)
    cfg = GeneratorConfig.from_json(card.provenance["generator"])
    tf.config.threading.set_intra_op_parallelism_threads(1)
    model = float_model_of(card, batch_size=1)
    melody = tf.constant(melody_tensor(result.phrase_pitch[None], result.phrase_onset[None], cfg))
    noise = tf.constant(result.noise[None])
    chords = tf.constant(result.phrase_chords[None])
    serve = tf.function(
        lambda m, c, z: model({"melody": m, "chords": c, "noise": z}, training=False)
    )
    for _ in range(10):
        serve(melody, chords, noise)
    samples = []
    for _ in range(runs):
        t0 = time.perf_counter()
        out = serve(melody, chords, noise)
        [v.numpy() for v in out.values()]
        samples.append(time.perf_counter() - t0)
    med, p95 = percentiles(samples)
    int8_med, _ = percentiles(result.invoke_s)
    print(
        f"| float32 Keras (tf.function, 1 thread), one {card.bars}-bar phrase "
        f"| {med:.2f} | {p95:.2f} |"
    )
    print(f"int8 speed-up over float32 Keras: {med / int8_med:.1f}x")


def bench_workers(args: argparse.Namespace) -> int:
    """``bench workers``: training steps per second with 1, 2 ... local workers.

    The band generator at the style genres' size (batch 32) on a generated folder; the
    first epoch (tracing) is left out, the median of the rest reported.
    """
    import os
    import platform
    import tempfile

    from deepkeys.host.data.synthetic import write_band_folder
    from deepkeys.host.train import read_log
    from deepkeys.host.train import train as run_training

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        songs = Path(tmp) / "songs"
        write_band_folder(songs, args.files, seed=0, broken=0)
        for workers in args.workers or [1, 2]:
            run_dir = Path(tmp) / f"workers-{workers}"
            run_training(
                "bench",
                run_dir,
                args.epochs,
                0,
                False,
                "deepkeys bench workers",
                tcfg_overrides={
                    "steps_per_epoch": args.steps,
                    "patience": args.epochs,
                    "batch_size": BENCH_BATCH,
                },
                data_folder=songs,
                workers=workers,
            )
            epochs = read_log(run_dir / "log.jsonl")[1:]
            rate = float(np.median([args.steps / r["train_seconds"] for r in epochs]))
            rows.append((workers, rate))
    print(
        f"training steps, batch {BENCH_BATCH}, {args.steps} steps x {args.epochs - 1} epochs "
        f"after the first; {os.cpu_count()} CPUs, {platform.processor() or platform.machine()}"
    )
    print("| workers | steps/s | windows/s | vs 1 worker |\n|---|---|---|---|")
    for workers, rate in rows:
        print(f"| {workers} | {rate:.2f} | {BENCH_BATCH * rate:.0f} | {rate / rows[0][1]:.2f}x |")
    return 0


def prepare(args: argparse.Namespace) -> int:
    """``deepkeys prepare``: a folder of MIDI files into shards and a manifest."""
    from deepkeys.host.data.prepare import prepare_folder

    manifest = prepare_folder(
        args.folder,
        args.out,
        melody_track=args.melody_track,
        cluster=args.cluster,
        workers=args.workers,
    )
    windows = sum(e.windows for e in manifest.entries)
    print(
        f"files={len(manifest.entries)} reused={manifest.reused} prepared={manifest.prepared} "
        f"skipped={len(manifest.skipped)} windows={windows} seconds={manifest.seconds:g}"
    )
    for entry in manifest.skipped:
        print(f"skipped {entry.path}: {entry.skipped}")
    print(f"prepared={args.out}  (train with: deepkeys train --genre NAME --data {args.out})")
    return 0


def bench_prepare(args: argparse.Namespace) -> int:
    """``bench prepare``: fresh preparations of generated files, 1 and 2 local workers."""
    import os
    import platform

    from deepkeys.host.data.prepare import bench_prepare as timed

    print(
        f"data preparation of generated band songs (6-10 bars, every 50th ten times longer), "
        "nothing to reuse; "
        f"{os.cpu_count()} CPUs, {platform.processor() or platform.machine()}"
    )
    print("| files | workers | seconds | files/s | vs 1 worker |\n|---|---|---|---|---|")
    for files in args.files or [1000]:
        rows = timed(files, args.workers or [1, 2])
        for row in rows:
            speedup = rows[0]["seconds"] / row["seconds"]
            print(
                f"| {row['files']} | {row['workers']} | {row['seconds']:.1f} "
                f"| {row['files_per_second']:.0f} | {speedup:.2f}x |"
            )
    return 0
