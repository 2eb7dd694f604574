"""``deepkeys train-harmony`` end to end on a tiny made-up corpus: train, choose the
decoding, export int8, measure, write a card the device loads. The real run (POP909,
chorales, folk tunes) is in models/harmony.json's card; this checks the pipeline."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("tensorflow")  # host code
pytestmark = pytest.mark.host

from deepkeys.device.chords import Chord  # noqa: E402
from deepkeys.device.encoding import REST  # noqa: E402
from deepkeys.device.generation.harmony import (  # noqa: E402
    N_FEATURES,
    PHRASE_CELLS,
    SOURCES,
    Harmonizer,
    load_harmony_card,
)
from deepkeys.host.harmony.data import Phrases, _Builder  # noqa: E402
from deepkeys.host.harmony.model import HarmonyConfig, build_harmony_model  # noqa: E402
from deepkeys.host.harmony.train import root_marginal, train_harmony  # noqa: E402

# Each half bar arpeggiates its chord's tones: a melody that names its chord.
PROGRESSIONS = [["C", "F", "G", "C"], ["Am", "Dm", "G", "C"], ["C", "Am", "F", "G"]]


def arpeggio_phrases(count: int, seed: int) -> Phrases:
    rng = np.random.default_rng(seed)
    builder = _Builder()
    for i in range(count):
        names = PROGRESSIONS[i % len(PROGRESSIONS)] * 4  # 16 half bars
        chords = [Chord.parse(n) for n in names]
        pitch = np.full(128, REST, np.int16)
        onset = np.zeros(128, bool)
        for cell, chord in enumerate(chords):
            tones = sorted(chord.pitch_classes)
            for k in range(4):  # four 8th notes
                step = cell * 8 + 2 * k
                pitch[step : step + 2] = 60 + tones[int(rng.integers(len(tones)))]
                onset[step] = True
        builder.add(pitch, onset, chords, SOURCES.index("pop909"), f"made-up-{seed}-{i}")
    return builder.phrases()


def test_train_export_and_load_a_harmony_model(tmp_path: Path) -> None:
    data = {
        "train": arpeggio_phrases(600, 0),
        "validation": arpeggio_phrases(60, 1),
        "test": arpeggio_phrases(60, 2),
    }
    cfg = HarmonyConfig(epochs=3, seed=0)
    out = tmp_path / "models"  # not there yet: made, as --out is
    card = train_harmony(out, tmp_path / "run", cfg, "test", loader=lambda: data)

    loaded = load_harmony_card(out / "harmony.json")  # the sha256 of the model checks
    assert loaded.inputs["cells"].shape == (1, PHRASE_CELLS, N_FEATURES)  # int8, checked
    test = card.provenance["test_metrics"]
    # The melody spells its chords, so even 3 epochs beat the rule and the tonic.
    assert test["model_most_likely"]["root"] > 0.8
    assert test["model_most_likely"]["root"] > test["always_I"]["root"]

    # int8 agrees with the float weights it came from on the chord of nearly every cell.
    float_model = build_harmony_model(cfg)
    float_model.load_weights(str(tmp_path / "run" / "harmony.float.weights.h5"))
    features = data["test"].features
    float_roots = root_marginal(float_model.predict(features, verbose=0)["chords"]).argmax(-1)
    harmonizer = Harmonizer(loaded)
    int8 = np.stack([harmonizer.cell_probabilities(f) for f in features])
    assert (root_marginal(int8).argmax(-1) == float_roots).mean() > 0.95
