"""Export a trained generator to a full-integer int8 LiteRT model plus its card.

The graph is rebuilt with batch size 1 (XNNPACK then covers the whole network),
the best float weights are loaded into it, and the converter calibrates every
tensor on real training melodies. The card records the int8 parameters read back
from the converted model, so the device checks exactly what it runs.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
from pathlib import Path
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from deepkeys.device.atomic import atomic_write_bytes
from deepkeys.device.encoding import DRUM_CLASSES
from deepkeys.device.generation.card import (
    ModelCard,
    Playback,
    TensorSpec,
    TrackSpec,
    load_card,
    sha256_of,
)
from deepkeys.device.generation.generator import Generator, noise_vector
from deepkeys.host.data.windows import Windows
from deepkeys.host.model import GeneratorConfig, build_generator

log = logging.getLogger("deepkeys.export")

MMA_DATASET = (
    "Style-template data, not recorded music. Melodies and harmony are real: the music21 "
    "corpus's Bach chorales (soprano = melody; the four voices reduced to one or two chords a "
    "bar) and 130 POP909 songs (MIT; the vocal melody over the annotated chords, up to 32 bars "
    "of each 4/4 run). Accompaniment: Debian's mma {mma} rendering those progressions in the "
    "grooves {grooves}; its output mapped by GM program family onto bass (lowest line), comp, "
    "pad and drum classes; 16th grid{swing}; 4-bar windows, 1-bar hop; transposition "
    "augmentation; split by chorale (host/splits/chorale.json) and by song "
    "(host/splits/pop909.json)"
)


def _band(
    description: str,
    bass: int,
    comp: int,
    pad: int,
    tempo: float,
    swing: float = 0.5,
    temperature: float = 0.5,
    accent: float = 0.15,
    drum_notes: dict[str, int] | None = None,
) -> dict:
    """The instrumentation of a band genre: GM programs of bass, comp and pad."""
    return {
        "description": description,
        "tracks": {
            "bass": (bass, 1, 84),
            "comp": (comp, 2, 68),
            "pad": (pad, 3, 56),
            "drums": (0, 9, 80),
        },
        "drum_notes": drum_notes or {},
        "playback": Playback(
            tempo_bpm=tempo,
            swing=swing,
            temperature=temperature,
            melody_program=0,
            melody_velocity=100,
            accent=accent,
        ),
    }


# How each genre sounds: GM programs, channels, velocities, tempo, swing, accents.
INSTRUMENTATION = {
    "chorale": {
        "description": (
            "Four-part chorale harmony: alto, tenor and bass voices for the melody you play, "
            "learned from J. S. Bach's chorales (real music, the music21 corpus)."
        ),
        "tracks": {"alto": (19, 1, 72), "tenor": (19, 2, 68), "bass": (19, 3, 76)},  # organ
        "playback": Playback(
            tempo_bpm=76,
            swing=0.5,
            temperature=0.5,
            melody_program=0,
            melody_velocity=100,
            accent=0.12,
        ),
        "dataset": (
            "music21 corpus: Bach chorales in 4/4 with exactly four parts, soprano = "
            "melody, alto/tenor/bass = accompaniment; 16th grid; 4-bar windows, 1-bar "
            "hop; transposition augmentation; split by chorale (host/splits/chorale.json)"
        ),
    },
    # Not a trained model: the chorale model's file and weights under orchestral instruments.
    "symphony": {
        "reuses": "chorale",
        "description": (
            "Orchestral strings and horn: the chorale model (Bach's four-part harmony, the "
            "same weights and file) played by viola, French horn and cello under a violin "
            "melody."
        ),
        "tracks": {"alto": (41, 1, 70), "tenor": (60, 2, 64), "bass": (42, 3, 78)},
        "playback": Playback(
            tempo_bpm=72,
            swing=0.5,
            temperature=0.5,
            melody_program=40,
            melody_velocity=96,
            accent=0.1,
        ),
    },
    "ballad": {
        "description": (
            "Pop piano: a pianist's accompaniment, bass line and chords, learned from the "
            "people who arranged POP909's songs (real playing)."
        ),
        "tracks": {"bass": (0, 1, 74), "piano": (0, 2, 64)},
        "playback": Playback(
            tempo_bpm=80,
            swing=0.5,
            temperature=0.5,
            melody_program=0,
            melody_velocity=100,
            accent=0.1,
        ),
        "dataset": (
            "Real playing. POP909 (Wang et al., ISMIR 2020, MIT; songs 001-810, split by song "
            "in host/splits/pop909.json): the vocal melody, the pianist's accompaniment (its "
            "lowest sounding note as the bass voice, every other note as one polyphonic part) "
            "and the annotated chords, on each song's own beat grid, 4/4 runs only; 4-bar "
            "windows, 2-bar hop; transposition augmentation"
        ),
    },
    "rock": _band(
        "Rock band: drums, picked bass, overdriven guitar and organ.", 34, 29, 18, 120, accent=0.2
    ),
    "pop": _band("Pop ballad and 8-beat: drums, bass, electric piano and strings.", 33, 4, 48, 96),
    "jazz": _band(
        "Swing jazz combo: ride and brushes, walking bass, jazz guitar, brass.",
        32,
        26,
        61,
        132,
        swing=0.64,
        accent=0.1,
    ),
    "bossa": _band(
        "Bossa nova: side-stick and shaker, bass, nylon guitar, strings.",
        32,
        24,
        48,
        128,
        accent=0.1,
        drum_notes={"snare": 37},
    ),
    "blues": _band("Blues shuffle: drums, bass, organ and brass.", 33, 16, 61, 92, swing=0.64),
    "funk": _band("Funk: drums, slap bass, muted guitar and horns.", 36, 28, 61, 104, accent=0.2),
    "country": _band("Country: drums, bass, steel guitar and fiddle.", 32, 25, 110, 112),
}


# Whose harmony each genre asks the harmony model for, and the chord qualities it leans
# to (log-probability added at decoding): jazz and bossa colour with sevenths, the
# blues plays dominant sevenths.
HARMONY_STYLE: dict[str, tuple[str, dict[str, float]]] = {
    "chorale": ("chorale", {}),
    "symphony": ("chorale", {}),
    "jazz": ("pop909", {"7": 0.7, "maj7": 0.9, "min7": 0.9}),
    "bossa": ("pop909", {"maj7": 0.7, "min7": 0.7}),
    "blues": ("pop909", {"7": 1.2}),
    "funk": ("pop909", {"7": 0.5, "min7": 0.6}),
}


def instrumentation(genre: str) -> dict:
    """A genre's instrumentation; a user's own genre sounds like a plain band."""
    return INSTRUMENTATION.get(genre) or _band(
        f"{genre}: trained from your own MIDI files.", 33, 0, 48, 110
    )


def card_file(out_dir: Path, genre: str) -> Path:
    """Where a genre's card is written: ``out_dir/<genre>.json``, beside its model."""
    return out_dir / f"{genre}.json"


def load_run(run_dir: Path) -> tuple[dict, GeneratorConfig]:
    config = json.loads((run_dir / "config.json").read_text())
    return config, GeneratorConfig.from_json(config["generator"])


def float_generator(
    run_dir: Path, weights: Path | None = None, batch_size: int | None = None
) -> keras.Model:
    """The trained float Keras generator of a run."""
    _, cfg = load_run(run_dir)
    model = build_generator(cfg, batch_size=batch_size)
    model.load_weights(weights or run_dir / "best.weights.h5")
    return model


def convert_int8(
    model, cfg: GeneratorConfig, calibration: dict[str, np.ndarray], seed: int = 0
) -> bytes:
    """Full-integer conversion; ``calibration`` holds conditioning inputs (melody, chords)."""

    rng = np.random.default_rng(seed)

    def representative():
        # A dict keyed by input name: a list would be matched to inputs by position.
        for i in range(len(calibration["melody"])):
            groove = int(rng.integers(len(cfg.grooves))) if cfg.grooves else None
            yield {
                **{k: v[i][None].astype(np.float32) for k, v in calibration.items()},
                "noise": noise_vector(cfg.noise_dim, len(cfg.grooves), groove, rng)[None],
            }

    return full_integer(model, representative)


def full_integer(model, representative) -> bytes:
    """The int8 LiteRT flatbuffer of a Keras model, inputs and outputs int8 too, calibrated
    on what ``representative()`` yields (dicts keyed by input name). The genre models and
    the harmony model are converted by this one function."""
    # The Keras model's own signature keeps the input and output names.
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = representative
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = tf.int8
    converter.inference_output_type = tf.int8
    return converter.convert()


def tensor_specs(model_bytes: bytes) -> tuple[dict[str, TensorSpec], dict[str, TensorSpec]]:
    """Names, shapes and int8 parameters, read back from the converted model."""
    from ai_edge_litert.interpreter import Interpreter

    runner = Interpreter(model_content=model_bytes).get_signature_runner()

    def specs(details: dict) -> dict[str, TensorSpec]:
        return {
            name: TensorSpec(
                name,
                tuple(int(x) for x in d["shape"]),
                float(d["quantization"][0]),
                int(d["quantization"][1]),
            )
            for name, d in sorted(details.items())
        }

    return specs(runner.get_input_details()), specs(runner.get_output_details())


def git_commit() -> str:
    try:
        rev = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
            cwd=Path(__file__).parent,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            cwd=Path(__file__).parent,
        ).stdout
        return rev + ("-dirty" if dirty.strip() else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def _val_loss(row: dict) -> float:
    return row.get("val_loss", row.get("val_ce", np.inf))  # val_ce: logs before band models


def export(
    run_dir: Path,
    genre: str,
    out_dir: Path,
    calibration: dict[str, np.ndarray],
    melody_center: int,
    history: list[dict],
    extra_provenance: dict,
    dataset: str,
) -> ModelCard:
    """Write ``out_dir/<genre>.tflite``, ``.json`` and the float weights; return the card."""
    config, cfg = load_run(run_dir)
    spec = instrumentation(genre)
    model = float_generator(run_dir, batch_size=1)
    model_bytes = convert_int8(model, cfg, calibration)
    inputs, outputs = tensor_specs(model_bytes)

    out_dir.mkdir(parents=True, exist_ok=True)
    tflite, json_path = out_dir / f"{genre}.tflite", card_file(out_dir, genre)
    atomic_write_bytes(tflite, model_bytes)
    float_weights = out_dir / f"{genre}.float.weights.h5"
    model.save_weights(float_weights)  # for `bench generate` and the int8-vs-float check

    tracks = []
    for name, kind in cfg.kinds().items():
        program, channel, velocity = spec["tracks"][name]
        drum_notes = tuple(
            spec.get("drum_notes", {}).get(cls, notes[0]) for cls, notes in DRUM_CLASSES
        )
        tracks.append(
            TrackSpec(
                name=name,
                program=program,
                channel=channel,
                kind=kind,
                is_drum=kind == "drums",
                output=name,
                onset_output="" if kind == "drums" else f"{name}_onset",
                velocity=velocity,
                drum_notes=drum_notes if kind == "drums" else (),
            )
        )
    card = ModelCard(
        genre=genre,
        bars=cfg.bars,
        pitch_low=cfg.pitch_low,
        pitch_high=cfg.pitch_high,
        melody_center=melody_center,
        inputs=inputs,
        outputs=outputs,
        tracks=tuple(tracks),
        grooves=tuple(cfg.grooves),
        playback=spec["playback"],
        sha256=sha256_of(tflite),
        description=spec["description"],
        harmony_source=HARMONY_STYLE.get(genre, ("pop909", {}))[0],
        quality_bias=HARMONY_STYLE.get(genre, ("pop909", {}))[1],
        provenance={
            "dataset": dataset,
            "train_command": config["command"],
            "code_commit": git_commit(),
            "generator": cfg.to_json(),
            "train_config": config["train"],
            "epochs_run": len(history),
            "best_epoch": min(history, key=_val_loss)["epoch"] if history else None,
            "history": [
                {k: (round(v, 5) if isinstance(v, float) else v) for k, v in r.items()}
                for r in history
            ],
            "float_weights": float_weights.name,
            "float_weights_sha256": sha256_of(float_weights),
            "tflite_bytes": len(model_bytes),
            **extra_provenance,
        },
        path=json_path,
    )
    atomic_write_bytes(json_path, (json.dumps(card.to_json(), indent=1) + "\n").encode())
    loaded = load_card(json_path)  # the device's own checks, before anyone relies on it
    Generator(loaded)
    log.info("exported=%s bytes=%d sha256=%s", tflite, len(model_bytes), card.sha256[:12])
    return loaded


def reuse(source: ModelCard, genre: str, out_dir: Path) -> ModelCard:
    """A genre that plays another genre's model with its own instruments and playback:
    the same model bytes (so the same sha256) under ``<genre>.tflite``, and a card that
    says which model it reuses."""
    spec = INSTRUMENTATION[genre]
    out_dir.mkdir(parents=True, exist_ok=True)
    tflite, json_path = out_dir / f"{genre}.tflite", card_file(out_dir, genre)
    atomic_write_bytes(tflite, source.model_path.read_bytes())
    tracks = tuple(
        TrackSpec(
            **{
                **t.to_json(),
                "program": spec["tracks"][t.name][0],
                "velocity": spec["tracks"][t.name][2],
            }
        )
        for t in source.tracks
    )
    provenance = {
        **source.provenance,
        "reuses": source.genre,
        "float_weights": str(
            Path(
                os.path.relpath(
                    source.model_path.parent / source.provenance["float_weights"], out_dir
                )
            )
        ),
        "export_command": f"deepkeys export --genre {genre}",
    }
    card = ModelCard(
        genre=genre,
        bars=source.bars,
        pitch_low=source.pitch_low,
        pitch_high=source.pitch_high,
        melody_center=source.melody_center,
        inputs=source.inputs,
        outputs=source.outputs,
        tracks=tracks,
        playback=spec["playback"],
        sha256=sha256_of(tflite),
        grooves=source.grooves,
        description=spec["description"],
        provenance=provenance,
        path=json_path,
        harmony_source=source.harmony_source,
        quality_bias=source.quality_bias,
    )
    atomic_write_bytes(json_path, (json.dumps(card.to_json(), indent=1) + "\n").encode())
    loaded = load_card(json_path)
    Generator(loaded)
    return loaded


THRESHOLDS = np.round(np.arange(0.2, 0.65, 0.05), 2)


def calibrate_thresholds(
    card: ModelCard, model: keras.Model, windows: Windows, n: int = 256
) -> dict[str, float | None]:
    """For each poly and drum track, the firing threshold whose decoded notes come
    closest in number to the data's, on ``n`` validation windows: a multi-hot part
    whose pitches are uncertain (an arpeggio's next chord tone) otherwise falls silent.

    None for a track whose data has no note at all (MMA's rock grooves have no pad, a
    user's folder may have no drums): :func:`set_thresholds` leaves it out of the card,
    which would otherwise list an instrument that never plays."""
    from deepkeys.host.evaluate import decode_outputs, true_parts

    cfg = GeneratorConfig.from_json(card.provenance["generator"])
    kinds = {t.name: t.kind for t in card.tracks}
    drum_notes = next((t.drum_notes for t in card.tracks if t.kind == "drums"), ())
    sample = windows.take(np.linspace(0, len(windows) - 1, min(n, len(windows))).astype(int))
    rng = np.random.default_rng(0)
    noise = np.stack(
        [noise_vector(cfg.noise_dim, len(cfg.grooves), int(g), rng) for g in sample.groove]
    )
    out = model.predict({**sample.inputs(cfg), "noise": noise}, batch_size=64, verbose=0)
    truth = true_parts(sample, kinds, drum_notes)
    chosen: dict[str, float | None] = {}
    for name, kind in kinds.items():
        if kind == "mono":
            continue
        target = sum(len(p[name]) for p in truth)
        if not target:
            chosen[name] = None
            log.info("threshold track=%s dropped: no note in %d windows", name, len(sample))
            continue
        counts = [
            sum(
                len(p[name])
                for p in decode_outputs(
                    out,
                    {name: kind},
                    cfg.pitch_low,
                    drum_notes=drum_notes,
                    thresholds={name: float(th)},
                )
            )
            for th in THRESHOLDS
        ]
        chosen[name] = float(THRESHOLDS[int(np.argmin([abs(c - target) for c in counts]))])
        log.info(
            "threshold track=%s chosen=%.2f notes=%d data=%d",
            name,
            chosen[name],
            counts[int(np.argmin([abs(c - target) for c in counts]))],
            target,
        )
    return chosen


def set_thresholds(card_path: Path, thresholds: dict[str, float | None]) -> ModelCard:
    """Write calibrated thresholds into a card (the model's sha256 is unaffected). A
    track whose threshold is None (its data never plays it) leaves the card, where no
    track of its kind after it stays: evaluation pairs a card's tracks of one kind with
    the data's parts in order."""
    raw = json.loads(card_path.read_text())
    kept: list[dict[str, Any]] = []
    dropped: dict[str, str] = {}
    for track in reversed(raw["tracks"]):
        name = track["name"]
        later = any(t["kind"] == track["kind"] for t in kept)
        if name in thresholds and thresholds[name] is None and not later:
            dropped[name] = "its data never plays it (no note in the validation windows)"
            continue
        if thresholds.get(name) is not None:
            track["threshold"] = thresholds[name]
        kept.append(track)
    raw["tracks"] = kept[::-1]
    if dropped:
        raw["provenance"]["dropped_tracks"] = dict(reversed(dropped.items()))
    raw["provenance"]["thresholds"] = "calibrated on the validation split (host/export.py)"
    atomic_write_bytes(card_path, (json.dumps(raw, indent=1) + "\n").encode())
    return load_card(card_path)


def add_metrics(card_path: Path, metrics: dict) -> None:
    """Record evaluation figures in a card (the card's sha256 is of the model, unaffected)."""
    raw = json.loads(card_path.read_text())
    raw["provenance"]["metrics"] = metrics
    atomic_write_bytes(card_path, (json.dumps(raw, indent=1) + "\n").encode())


def calibration_set(
    windows: Windows, cfg: GeneratorConfig, n: int = 256, seed: int = 0
) -> dict[str, np.ndarray]:
    """Melody and chord inputs of ``n`` training windows, for the int8 calibration."""
    rng = np.random.default_rng(seed)
    idx = rng.choice(len(windows), size=min(n, len(windows)), replace=False)
    return windows.take(idx).inputs(cfg)
