"""Train the harmony model, measure it against the baselines, export it to int8 with its card.

    deepkeys train-harmony --epochs 40 --seed 0      # about 3 minutes on 2 CPU cores

Training: one-hot targets with label smoothing, padding cells weighted 0, Adam, the
best validation root accuracy kept (early stop after ``patience`` epochs without one).
Then, on the validation phrases, the decoding settings are chosen: the weight of the
transition prior (for the most likely progression) and the default temperature: the
warmest whose root accuracy is within 0.03 of the most likely progression's, so that
GENERATE again reharmonizes without the harmony getting worse. (An entropy rule, the
coolest temperature within 10 % of the reference's chord entropy, chose 1.0 and cost a
fifth of the root accuracy; the table in the card keeps both measures.) The test
figures are measured once, with the int8 model the device runs, and written into the card.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import keras
import numpy as np

from deepkeys.device.atomic import atomic_write_bytes
from deepkeys.device.chords import N_QUALITIES, N_TOKENS, NO_CHORD, QUALITY_NAMES
from deepkeys.device.generation.card import sha256_of
from deepkeys.device.generation.harmony import (
    Harmonizer,
    HarmonyCard,
    load_harmony_card,
    rule_tokens,
    sample_chain,
)
from deepkeys.host.export import git_commit, tensor_specs
from deepkeys.host.harmony.data import IGNORE, Phrases, load_phrases
from deepkeys.host.harmony.model import HarmonyConfig, build_harmony_model

log = logging.getLogger("deepkeys.harmony")

DATASET = (
    "Real music. POP909 (Wang et al., ISMIR 2020, MIT; songs 001-810 of ../shared/datasets/pop909, "
    "split by song in host/splits/pop909.json): the vocal melody and the chords annotated from the "
    "pianist's accompaniment, on each song's own beat grid, 4/4 runs only. The Bach chorales of "
    "the music21 corpus (split by chorale in host/splits/chorale.json): the soprano, and the four "
    "voices reduced to a chord per half bar. The folk tunes of the music21 corpus whose ABC has "
    "chord symbols (split in host/splits/folk.json): only 2 tunes in 4/4 (the Nottingham Music "
    "Database sample), all in train. 8-bar phrases, 2 bars apart; every phrase is read "
    "relative to the key its melody implies (Krumhansl-Kessler), so all twelve keys are one."
)
TRANSITION_WEIGHTS = (0.0, 0.25, 0.5, 1.0)
TEMPERATURES = (0.0, 0.3, 0.5, 0.7, 1.0)
ROOT_SLACK = 0.03  # root accuracy a warmer default may give up for variety
MAJOR_THIRD = {"maj", "7", "maj7"}
MINOR_THIRD = {"min", "min7", "dim"}


# --- measuring ---------------------------------------------------------------------------
def third_of(tokens: np.ndarray) -> np.ndarray:
    """0 major third, 1 minor third, 2 sus (no third), 3 no chord."""
    quality = np.array([QUALITY_NAMES[t % N_QUALITIES] if t != NO_CHORD else "" for t in tokens])
    return np.select(
        [np.isin(quality, list(MAJOR_THIRD)), np.isin(quality, list(MINOR_THIRD)), quality != ""],
        [0, 1, 2],
        3,
    )


def score(
    predicted: np.ndarray, phrases: Phrases, root_probs: np.ndarray | None = None
) -> dict[str, float]:
    """Root, root + third, exact and (with root probabilities) top-2 root accuracy over
    the cells whose reference has a chord; chord-histogram entropy of both, in bits."""
    ref = phrases.targets
    keep = (ref != IGNORE) & (ref != NO_CHORD)
    r, p = ref[keep], predicted[keep]
    root_ok = (r // N_QUALITIES) == (p // N_QUALITIES)
    out = {
        "root": float(root_ok.mean()),
        "root_third": float((root_ok & (third_of(r) == third_of(p))).mean()),
        "exact": float((r == p).mean()),
        "entropy": entropy(predicted, phrases),
        "entropy_reference": entropy(ref, phrases),
    }
    if root_probs is not None:
        top2 = np.argsort(-root_probs[keep], axis=-1)[:, :2]
        out["top2_root"] = float((top2 == (r // N_QUALITIES)[:, None]).any(axis=1).mean())
    return out


def entropy(tokens: np.ndarray, phrases: Phrases) -> float:
    """Entropy (bits) of the histogram of absolute chords (tokens turned back to the key)."""
    absolute = []
    for row, rotation in zip(tokens, phrases.rotation):
        for t in row:
            if t not in (IGNORE, NO_CHORD):
                absolute.append(
                    ((t // N_QUALITIES + rotation) % 12) * N_QUALITIES + t % N_QUALITIES
                )
    counts = np.bincount(np.array(absolute, int), minlength=N_TOKENS).astype(float)
    p = counts[counts > 0] / counts.sum()
    return float(-(p * np.log2(p)).sum())


def decode_all(
    probs: np.ndarray,
    phrases: Phrases,
    transition: np.ndarray,
    temperature: float,
    seed: int = 0,
) -> np.ndarray:
    """Decode every phrase as the device does (no-chord never drawn)."""
    rng = np.random.default_rng(seed)
    out = np.full(phrases.targets.shape, IGNORE, np.int64)
    for i, (p, t) in enumerate(zip(probs, phrases.targets)):
        cells = int((t != IGNORE).sum())
        out[i, :cells] = sample_chain(np.log(np.clip(p[:cells], 1e-6, None)), transition,
                                      temperature, rng)  # fmt: skip
    return out


def root_marginal(probs: np.ndarray) -> np.ndarray:
    return probs[..., :NO_CHORD].reshape(*probs.shape[:-1], 12, N_QUALITIES).sum(axis=-1)


def transition_prior(phrases: Phrases, smoothing: float = 0.5) -> np.ndarray:
    """log P(next chord | chord) between neighbouring cells, key-relative."""
    counts = np.full((N_TOKENS, N_TOKENS), smoothing)
    t = phrases.targets
    pairs = (t[:, :-1] != IGNORE) & (t[:, 1:] != IGNORE)
    np.add.at(counts, (t[:, :-1][pairs], t[:, 1:][pairs]), 1.0)
    return np.log(counts / counts.sum(axis=1, keepdims=True))


# --- training ----------------------------------------------------------------------------
def _arrays(phrases: Phrases, smoothing: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    valid = phrases.targets != IGNORE
    target = np.where(valid, phrases.targets, 0)
    onehot = np.eye(N_TOKENS, dtype=np.float32)[target]
    onehot = onehot * (1 - smoothing) + smoothing / N_TOKENS
    return phrases.features, onehot, valid.astype(np.float32)


def fit(
    cfg: HarmonyConfig, data: dict[str, Phrases], log_path: Path
) -> tuple[keras.Model, list[dict[str, float]]]:
    keras.utils.set_random_seed(cfg.seed)
    model = build_harmony_model(cfg)
    model.compile(
        optimizer=keras.optimizers.Adam(cfg.learning_rate),
        loss={"chords": keras.losses.CategoricalCrossentropy()},
    )
    x, y, w = _arrays(data["train"], cfg.label_smoothing)
    best, best_weights, history, waited = -1.0, model.get_weights(), [], 0
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("w") as log_file:
        for epoch in range(1, cfg.epochs + 1):
            t0 = time.perf_counter()
            result = model.fit(
                x, {"chords": y}, sample_weight={"chords": w}, batch_size=cfg.batch_size,
                epochs=1, shuffle=True, verbose=0,
            )  # fmt: skip
            val = data["validation"]
            probs = model.predict(val.features, batch_size=256, verbose=0)["chords"]
            val_score = score(probs.argmax(axis=-1), val, root_marginal(probs))
            row = {
                "epoch": epoch,
                "loss": float(result.history["loss"][-1]),
                **{f"val_{k}": round(v, 4) for k, v in val_score.items()},
                "seconds": round(time.perf_counter() - t0, 1),
            }
            history.append(row)
            log_file.write(json.dumps(row) + "\n")
            log_file.flush()
            log.info(" ".join(f"{k}={v}" for k, v in row.items()))
            if val_score["root"] > best:
                best, best_weights, waited = val_score["root"], model.get_weights(), 0
            else:
                waited += 1
                if waited >= cfg.patience:
                    break
    model.set_weights(best_weights)
    return model, history


def choose_decoding(
    probs: np.ndarray, phrases: Phrases, prior: np.ndarray
) -> tuple[float, float, dict[str, Any]]:
    """The transition weight with the best most-likely-progression root accuracy, then the
    warmest temperature whose root accuracy is within ``ROOT_SLACK`` of that."""
    table: dict[str, Any] = {"weights": {}, "temperatures": {}}
    best_w, best_root = 0.0, -1.0
    for w in TRANSITION_WEIGHTS:
        s = score(decode_all(probs, phrases, prior * w, 0.0), phrases)
        table["weights"][str(w)] = s
        if s["root"] > best_root:
            best_w, best_root = w, s["root"]
    chosen_t = 0.0
    for t in TEMPERATURES:
        s = score(decode_all(probs, phrases, prior * best_w, t), phrases)
        table["temperatures"][str(t)] = s
        if s["root"] >= best_root - ROOT_SLACK:
            chosen_t = max(chosen_t, t)
    return best_w, chosen_t, table


def baselines(phrases: Phrases) -> dict[str, dict[str, float]]:
    """The rule harmonizer and chance, on the same phrases and the same key estimate."""
    rule = np.full(phrases.targets.shape, IGNORE, np.int64)
    for i, (f, t) in enumerate(zip(phrases.features, phrases.targets)):
        cells = int((t != IGNORE).sum())
        rule[i, :cells] = rule_tokens(f[:cells])
    always_tonic = np.where(phrases.targets != IGNORE, 0, IGNORE)  # the key's I chord
    return {"rule": score(rule, phrases), "always_I": score(always_tonic, phrases)}


def convert_int8(model: keras.Model, calibration: np.ndarray) -> bytes:
    def representative():
        for f in calibration:
            yield {"cells": f[None].astype(np.float32)}

    from deepkeys.host.export import full_integer

    return full_integer(model, representative)


def int8_probabilities(harmonizer: Harmonizer, phrases: Phrases) -> np.ndarray:
    return np.stack([harmonizer.cell_probabilities(f) for f in phrases.features])


def train_harmony(
    out_dir: Path,
    run_dir: Path,
    cfg: HarmonyConfig,
    command: str,
    loader: Callable[[], dict[str, Phrases]] = load_phrases,
) -> HarmonyCard:
    """Train, choose the decoding, export int8, measure on test, write the card."""
    t0 = time.perf_counter()
    out_dir.mkdir(parents=True, exist_ok=True)  # before the minutes of training, not after
    data = loader()
    model, history = fit(cfg, data, run_dir / "harmony.log.jsonl")
    prior = transition_prior(data["train"])
    val_probs = model.predict(data["validation"].features, batch_size=256, verbose=0)["chords"]
    weight, temperature, decoding_table = choose_decoding(val_probs, data["validation"], prior)

    export_model = build_harmony_model(cfg, batch_size=1)
    export_model.set_weights(model.get_weights())
    rng = np.random.default_rng(cfg.seed)
    calibration = data["train"].features[rng.choice(len(data["train"]), 512, replace=False)]
    tflite = convert_int8(export_model, calibration)
    inputs, outputs = tensor_specs(tflite)
    model_path = out_dir / "harmony.tflite"
    atomic_write_bytes(model_path, tflite)
    model.save_weights(str(run_dir / "harmony.float.weights.h5"))

    card = HarmonyCard(
        inputs=inputs,
        outputs=outputs,
        transition=prior,
        transition_weight=weight,
        temperature=temperature,
        sha256=sha256_of(model_path),
        description="melody -> one chord per half bar, shared by every genre",
        provenance={
            "dataset": DATASET,
            "command": command,
            "commit": git_commit(),
            "config": cfg.to_json(),
            "data": {part: p.summary() for part, p in data.items()},
            "history": history,
            "validation_decoding": decoding_table,
            "train_seconds": round(time.perf_counter() - t0, 1),
        },
        path=out_dir / "harmony.json",
    )
    write_card(card)
    harmonizer = Harmonizer(load_harmony_card(out_dir / "harmony.json"))
    test = data["test"]
    probs = int8_probabilities(harmonizer, test)
    metrics = {
        "model_most_likely": score(
            decode_all(probs, test, prior * weight, 0.0), test, root_marginal(probs)
        ),
        "model_sampled": score(decode_all(probs, test, prior * weight, temperature), test),
        **baselines(test),
    }
    from deepkeys.device.generation.harmony import SOURCES

    for source in SOURCES:
        mask = test.source == SOURCES.index(source)
        if not mask.any():
            continue
        sub = Phrases(test.features[mask], test.targets[mask], test.rotation[mask],
                      test.source[mask], [n for n, m in zip(test.names, mask) if m])  # fmt: skip
        metrics[f"model_most_likely_{source}"] = score(
            decode_all(probs[mask], sub, prior * weight, 0.0), sub, root_marginal(probs[mask])
        )
        metrics[f"rule_{source}"] = baselines(sub)["rule"]
    card.provenance["test_metrics"] = metrics
    write_card(card)
    return card


def write_card(card: HarmonyCard) -> None:
    assert card.path is not None
    atomic_write_bytes(card.path, (json.dumps(card.to_json(), indent=1) + "\n").encode())
