"""Does the accompaniment play the song's harmony? The harmony table, on held-out songs.

For 8-bar phrases of POP909's test songs (none in any training data), each genre
accompanies the melody three ways, through the same int8 genre model:
- ``model``: the chords of the harmony step, as the device plays them (seed 0);
- ``rule``: the rule harmonizer's chords (best diatonic triad per half bar);
- ``true``: the song's own annotated chords, given to the genre model.
and the song's own piano part (a person) is measured the same way. An estimator reads
the chord of each half bar from the pitched parts (note-time per pitch class, the
bass part doubled, :func:`~deepkeys.device.chords.chord_of_weights`), so every row is
judged by what it plays, not by what it was told:
- ``root``, ``root_third``: the estimated chord against the song's, where it has one;
- ``chord_tones``: the share of pitched note-time on the song's chord tones;
- ``coherence``: the share of half bars where the bass part plays the root of the
  chord the other parts play (the first models' parts each went their own way);
- ``entropy``: of the estimated chords' histogram (bits), beside the song's, so a row
  cannot score by always playing I and V.

    deepkeys evaluate-harmony --genre rock --genre ballad --phrases 48
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from deepkeys.device.chords import NONE, Chord, chord_of_weights
from deepkeys.device.encoding import REST, Note, voice_to_notes
from deepkeys.device.errors import UserError
from deepkeys.device.generation.card import load_card
from deepkeys.device.generation.generator import Generator
from deepkeys.device.generation.harmony import CELL_STEPS, Harmonizer
from deepkeys.device.generation.library import card_path
from deepkeys.host.data import pop909
from deepkeys.host.harmony.data import half_bar_token

PHRASE_BARS = 8
MAJOR_THIRD = {"maj", "7", "maj7"}


@dataclass
class Phrase:
    name: str
    melody: list[Note]
    steps: int
    chords: list[Chord]  # the song's, one per half bar (N where it has none)
    piano: dict[str, list[Note]]  # the pianist's part: "bass" (lowest line) and "upper"


def test_phrases(count: int, songs: Sequence[pop909.Song] | None = None) -> list[Phrase]:
    """``count`` 8-bar phrases spread over ``songs`` (default: POP909's test songs), each
    with melody in three half bars of four."""
    from deepkeys.host.data.multitrack import GridPart, line

    if songs is None:
        test = set(pop909.load_split()["test"])
        songs = [song for song in pop909.load_songs() if song.name in test]
    found = []
    for song in songs:
        for seg in song.segments:
            for bar in range(0, seg.bars - PHRASE_BARS + 1, PHRASE_BARS):
                beat = seg.beat + bar * 4
                steps = PHRASE_BARS * 16
                pitch, onset = song.melody_voice(beat * 4, steps)
                if (pitch.reshape(-1, CELL_STEPS) != REST).any(axis=1).mean() < 0.75:
                    continue
                beats = song.chords[beat : beat + PHRASE_BARS * 4]
                chords = [
                    Chord.from_token(half_bar_token(beats[i : i + 2]))
                    for i in range(0, len(beats), 2)
                ]
                sounding, struck = song.piano_roll(beat * 4, steps)
                bass, bass_onset = line(GridPart(sounding, struck))
                upper = [
                    Note(int(p), int(s), int(s) + 1)
                    for s, p in zip(*np.nonzero(sounding))
                    if bass[s] != p
                ]
                found.append(
                    Phrase(
                        f"{song.name}@{beat}",
                        voice_to_notes(pitch, onset),
                        steps,
                        chords,
                        {"bass": voice_to_notes(bass, bass_onset), "upper": upper},
                    )
                )
    if len(found) <= count:
        return found
    return [found[i] for i in np.linspace(0, len(found) - 1, count).astype(int)]


def played_chords(parts: dict[str, list[Note]], steps: int, bass_part: str | None) -> list[Chord]:
    """The chord each half bar's pitched parts play (the bass part doubled)."""
    out = []
    for c in range(steps // CELL_STEPS):
        lo, hi = c * CELL_STEPS, (c + 1) * CELL_STEPS
        weights = np.zeros(12)
        lowest = None
        for name, notes in parts.items():
            for n in notes:
                overlap = min(n.end, hi) - max(n.start, lo)
                if overlap > 0:
                    weights[n.pitch % 12] += overlap * (2.0 if name == bass_part else 1.0)
                    if name == bass_part and (lowest is None or n.pitch < lowest):
                        lowest = n.pitch
        out.append(chord_of_weights(weights, None if lowest is None else lowest % 12))
    return out


def bass_roots(notes: list[Note], steps: int) -> list[int | None]:
    """The pitch class of the bass's lowest note in each half bar."""
    out: list[int | None] = []
    for c in range(steps // CELL_STEPS):
        lo, hi = c * CELL_STEPS, (c + 1) * CELL_STEPS
        here = [n.pitch for n in notes if n.start < hi and n.end > lo]
        out.append(min(here) % 12 if here else None)
    return out


def phrase_scores(
    parts: dict[str, list[Note]], phrase: Phrase, bass_part: str | None
) -> dict[str, list[float]]:
    """Per half bar: root hit, root + third hit, coherence; and chord-tone note-time."""
    pitched = {k: v for k, v in parts.items() if k != "drums"}
    played = played_chords(pitched, phrase.steps, bass_part)
    out: dict[str, list[float]] = {"root": [], "root_third": [], "coherence": [], "tones": []}
    out["played"] = [float(c.token) for c in played]
    upper = {k: v for k, v in pitched.items() if k != bass_part}
    upper_chords = played_chords(upper, phrase.steps, None)
    lows = bass_roots(pitched.get(bass_part, []), phrase.steps) if bass_part else []
    for c, (ref, got) in enumerate(zip(phrase.chords, played)):
        if ref.root is not None:
            root_ok = got.root == ref.root
            third_ok = (got.quality in MAJOR_THIRD) == (ref.quality in MAJOR_THIRD)
            out["root"].append(float(root_ok))
            out["root_third"].append(float(root_ok and third_ok))
        if bass_part and lows[c] is not None and upper_chords[c].root is not None:
            out["coherence"].append(float(lows[c] == upper_chords[c].root))
    on = total = 0.0
    for notes in pitched.values():
        for n in notes:
            for step in range(n.start, min(n.end, phrase.steps)):
                ref = phrase.chords[step // CELL_STEPS]
                if ref.root is not None:
                    total += 1
                    on += (n.pitch % 12) in ref.pitch_classes
    out["tones"] = [on / total] if total else []
    return out


def entropy(tokens: Sequence[float]) -> float:
    counts = np.bincount(np.array(tokens, int))
    p = counts[counts > 0] / counts.sum()
    return float(-(p * np.log2(p)).sum())


def summarize(scores: list[dict[str, list[float]]]) -> dict[str, float]:
    def mean(key: str) -> float:
        values = [v for s in scores for v in s[key]]
        return float(np.mean(values)) if values else float("nan")

    played = [v for s in scores for v in s["played"] if v != NONE.token]
    return {
        "root": mean("root"),
        "root_third": mean("root_third"),
        "chord_tones": mean("tones"),
        "coherence": mean("coherence"),
        "entropy": entropy(played) if played else float("nan"),
    }


def harmony_table(
    genres: Sequence[str],
    count: int = 48,
    models: str | None = None,
    songs: Sequence[pop909.Song] | None = None,
) -> dict:
    """Rows: the song's piano, then per genre model / rule / true chords."""
    phrases = test_phrases(count, songs)
    if not phrases:
        raise UserError("no 8-bar phrase with a melody throughout in the held-out songs")
    rule = Harmonizer.rule()
    reference = [float(c.token) for p in phrases for c in p.chords if c.root is not None]
    table: dict[str, dict[str, float]] = {
        "the song's own piano (a person)": summarize(
            [phrase_scores(p.piano, p, "bass") for p in phrases]
        )
    }
    for genre in genres:
        generator = Generator(load_card(card_path(genre, models)))
        bass_part = "bass" if any(t.name == "bass" for t in generator.card.tracks) else None
        rows: dict[str, list] = {"model": [], "rule": [], "true": []}
        for i, p in enumerate(phrases):
            from deepkeys.device.encoding import notes_to_voice

            pitch, onset = notes_to_voice(p.melody, p.steps)
            true = _filled(p.chords)
            given = {
                "model": None,
                "rule": rule.harmonize(pitch, onset, source=generator.card.harmony_source),
                "true": true,
            }
            for how, chords in given.items():
                made = generator.accompany(p.melody, p.steps, seed=i, chords=chords)
                rows[how].append(phrase_scores(made.parts, p, bass_part))
        for how, scores in rows.items():
            table[f"{genre}: {how} chords"] = summarize(scores)
    table["reference entropy"] = {"entropy": entropy(reference)}
    return {"phrases": len(phrases), "table": table}


def _filled(chords: list[Chord]) -> list[Chord]:
    """No-chord half bars keep the chord before (or after) them: the band needs one."""
    known = [c for c in chords if c.root is not None] or [Chord(0)]
    last, out = known[0], []
    for c in chords:
        last = c if c.root is not None else last
        out.append(last)
    return out


def format_table(result: dict) -> str:
    cols = ("root", "root_third", "chord_tones", "coherence", "entropy")
    lines = [
        f"harmony on {result['phrases']} held-out POP909 phrases of 8 bars",
        "| accompaniment | " + " | ".join(cols) + " |",
        "|---|" + "---|" * len(cols),
    ]
    for name, row in result["table"].items():
        cells = [f"{row[c]:.2f}" if c in row and row[c] == row[c] else "-" for c in cols]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
