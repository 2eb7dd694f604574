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
  cannot score by always playing I and V;
- ``pcs`` and ``ctnctr``: Yeh et al.'s (2021) measures of the melody against the chords
  played (:func:`pitch_consonance`, :func:`chord_tone_ratio`); the song's own chords get
  a row of their own.

Held-out phrases come from each source's test split: POP909's songs (the pianist's part
is "the song's own"), the chorales (the soprano is the melody, the alto, tenor and bass
voices are Bach's own accompaniment, the chords reduced from all four) and the folk
tunes (their ABC chord symbols; no accompaniment of their own).

    deepkeys evaluate-harmony --genre rock --genre ballad --phrases 48 --source chorale
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


SOURCES = ("pop909", "chorale", "folk")
MELODY_SHARE = 0.75  # a test phrase has melody in three half bars of four


def test_phrases(count: int, source: str = "pop909") -> list[Phrase]:
    """``count`` 8-bar phrases spread over the test split of ``source``."""
    if source == "pop909":
        found = pop909_test_phrases()
    elif source == "chorale":
        found = chorale_test_phrases()
    elif source == "folk":
        found = folk_test_phrases()
    else:
        raise UserError(f"unknown source {source!r} (choose from {', '.join(SOURCES)})")
    return _spread(found, count)


def _spread(found: list[Phrase], count: int) -> list[Phrase]:
    if len(found) <= count:
        return found
    return [found[i] for i in np.linspace(0, len(found) - 1, count).astype(int)]


def _melodic(pitch: np.ndarray) -> bool:
    return bool((pitch.reshape(-1, CELL_STEPS) != REST).any(axis=1).mean() >= MELODY_SHARE)


def chorale_test_phrases() -> list[Phrase]:
    """Non-overlapping 8-bar phrases of the test chorales: the soprano with Bach's lower
    three voices as the accompaniment (the lowest as the bass)."""
    from deepkeys.host.data import chorales
    from deepkeys.host.data.mma import chord_of

    test = set(chorales.load_split()["test"])
    found = []
    steps = PHRASE_BARS * 16
    for c in chorales.load_chorales():
        if c.name not in test:
            continue
        for start in range(0, c.pitch.shape[1] - steps + 1, steps):
            sl = slice(start, start + steps)
            if not _melodic(c.pitch[0, sl]):
                continue
            chords = []
            for cell in range(steps // CELL_STEPS):
                name = chord_of(c.pitch[:, sl][:, cell * CELL_STEPS : (cell + 1) * CELL_STEPS])
                chords.append(Chord.parse(name) if name else NONE)
            inner = [voice_to_notes(c.pitch[v, sl], c.onset[v, sl]) for v in (1, 2)]
            found.append(
                Phrase(
                    f"{c.name}@{start // 16}",
                    voice_to_notes(c.pitch[0, sl], c.onset[0, sl]),
                    steps,
                    chords,
                    {
                        "bass": voice_to_notes(c.pitch[3, sl], c.onset[3, sl]),
                        "upper": inner[0] + inner[1],
                    },
                )
            )
    return found


def folk_test_phrases() -> list[Phrase]:
    """Non-overlapping 8-bar phrases of the test folk tunes, with their chord symbols."""
    from deepkeys.host.data import folk

    test = set(folk.load_split()["test"])
    found = []
    steps = PHRASE_BARS * 16
    for tune in folk.load_tunes():
        if tune.name not in test:
            continue
        for start in range(0, len(tune.pitch) - steps + 1, steps):
            pitch, onset = tune.pitch[start : start + steps], tune.onset[start : start + steps]
            if not _melodic(pitch):
                continue
            cells = tune.chords[start // CELL_STEPS : (start + steps) // CELL_STEPS]
            chords = [Chord.from_token(int(t)) for t in cells]
            found.append(
                Phrase(
                    f"{tune.name}@{start // 16}", voice_to_notes(pitch, onset), steps, chords, {}
                )
            )
    return found


def pop909_test_phrases(songs: Sequence[pop909.Song] | None = None) -> list[Phrase]:
    """Non-overlapping 8-bar phrases of POP909's test songs (or ``songs``), with the
    pianist's part as the song's own accompaniment."""
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
                if not _melodic(pitch):
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
    return found


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
    return {**out, **melody_scores(phrase.melody, played, phrase.steps)}


# Yeh et al. 2021: melody-to-chord-tone intervals (semitones, mod 12) score +1 for a
# unison, third, fifth or sixth, 0 for a fourth, -1 for the rest.
_INTERVAL_SCORE = np.array([1, -1, -1, 1, 1, 0, -1, 1, 1, 1, -1, -1], float)


def pitch_consonance(melody: list[Note], chords: Sequence[Chord], steps: int) -> list[float]:
    """PCS per 16th step where the melody sounds over a chord: the mean score of the
    intervals from the melody note down to each chord tone.

    >>> c = [Chord.parse("C")] * 2
    >>> pitch_consonance([Note(64, 0, 2), Note(65, 2, 4)], c, 16)      # E over C, then F
    [1.0, 1.0, -0.3333333333333333, -0.3333333333333333]
    """
    out = []
    for note in melody:
        for step in range(note.start, min(note.end, steps)):
            chord = chords[step // CELL_STEPS]
            if chord.root is not None:
                tones = np.array(sorted(chord.pitch_classes))
                out.append(float(_INTERVAL_SCORE[(note.pitch - tones) % 12].mean()))
    return out


def chord_tone_ratio(melody: list[Note], chords: Sequence[Chord], steps: int) -> tuple[int, int]:
    """CTnCTR's numerator and denominator over the melody's notes: (chord tones + proper
    non-chord tones, chord tones + all non-chord tones), a proper non-chord tone being
    one that the next note, a chord tone within 2 semitones, resolves.

    >>> c = [Chord.parse("C")] * 2
    >>> chord_tone_ratio([Note(62, 0, 2), Note(64, 2, 4), Note(66, 4, 6)], c, 16)
    (2, 3)
    """
    good = total = 0
    in_phrase = [n for n in sorted(melody, key=lambda n: n.start) if n.start < steps]
    for i, note in enumerate(in_phrase):
        chord = chords[note.start // CELL_STEPS]
        if chord.root is None:
            continue
        total += 1
        if note.pitch % 12 in chord.pitch_classes:
            good += 1
            continue
        after = in_phrase[i + 1] if i + 1 < len(in_phrase) else None
        if after is not None and abs(after.pitch - note.pitch) <= 2:
            next_chord = chords[after.start // CELL_STEPS] if after.start < steps else chord
            good += after.pitch % 12 in next_chord.pitch_classes
    return good, total


def melody_scores(melody: list[Note], chords: Sequence[Chord], steps: int) -> dict[str, list]:
    """``pcs`` per step and ``ctnctr`` as [(good, total)], for :func:`summarize`."""
    return {
        "pcs": pitch_consonance(melody, chords, steps),
        "ctnctr": [chord_tone_ratio(melody, chords, steps)],
    }


def entropy(tokens: Sequence[float]) -> float:
    counts = np.bincount(np.array(tokens, int))
    p = counts[counts > 0] / counts.sum()
    return float(-(p * np.log2(p)).sum())


def summarize(scores: list[dict[str, list]]) -> dict[str, float]:
    def mean(key: str) -> float:
        values = [v for s in scores for v in s.get(key, [])]
        return float(np.mean(values)) if values else float("nan")

    played = [v for s in scores for v in s.get("played", []) if v != NONE.token]
    ratios = [r for s in scores for r in s["ctnctr"]]
    total = sum(t for _, t in ratios)
    return {
        "root": mean("root"),
        "root_third": mean("root_third"),
        "chord_tones": mean("tones"),
        "coherence": mean("coherence"),
        "entropy": entropy(played) if played else float("nan"),
        "pcs": mean("pcs"),
        "ctnctr": sum(g for g, _ in ratios) / total if total else float("nan"),
    }


OWN_PART = {
    "pop909": "the song's own piano (a person)",
    "chorale": "Bach's own alto, tenor and bass",
}


def harmony_table(
    genres: Sequence[str],
    count: int = 48,
    models: str | None = None,
    source: str = "pop909",
    phrases: list[Phrase] | None = None,
) -> dict:
    """Rows: the piece's own accompaniment (where it has one), then per genre model /
    rule / true chords, then the piece's own chords against its melody."""
    phrases = test_phrases(count, source) if phrases is None else phrases
    if not phrases:
        raise UserError(f"no 8-bar phrase with a melody throughout in the held-out {source}")
    rule = Harmonizer.rule()
    reference = [float(c.token) for p in phrases for c in p.chords if c.root is not None]
    table: dict[str, dict[str, float]] = {}
    if source in OWN_PART:
        table[OWN_PART[source]] = summarize([phrase_scores(p.piano, p, "bass") for p in phrases])
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
    table["the pieces' own chords"] = {
        **summarize([melody_scores(p.melody, p.chords, p.steps) for p in phrases]),
        "entropy": entropy(reference),
    }
    return {"phrases": len(phrases), "source": source, "table": table}


def _filled(chords: list[Chord]) -> list[Chord]:
    """No-chord half bars keep the chord before (or after) them: the band needs one."""
    known = [c for c in chords if c.root is not None] or [Chord(0)]
    last, out = known[0], []
    for c in chords:
        last = c if c.root is not None else last
        out.append(last)
    return out


def format_table(result: dict) -> str:
    cols = ("root", "root_third", "chord_tones", "coherence", "entropy", "pcs", "ctnctr")
    lines = [
        f"harmony on {result['phrases']} held-out {result['source']} phrases of 8 bars",
        "| accompaniment | " + " | ".join(cols) + " |",
        "|---|" + "---|" * len(cols),
    ]
    for name, row in result["table"].items():
        cells = [f"{row[c]:.2f}" if c in row and row[c] == row[c] else "-" for c in cols]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
