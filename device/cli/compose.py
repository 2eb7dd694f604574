"""``deepkeys generate``, ``demo`` and ``genres``: accompaniments from MIDI files, no daemon.

The generation modules (the model interpreter, the synth) are imported inside the handlers,
so that ``deepkeys --help`` and the other commands do not load them.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from deepkeys.device.cli.options import Subcommands, add_command, add_models, seed, temperature
from deepkeys.device.config import CLOCK_SEED, TEMPO_MAX, TEMPO_MIN, resolve_seed
from deepkeys.device.errors import UserError
from deepkeys.device.resources import BUNDLED_MELODIES

if TYPE_CHECKING:
    from deepkeys.device.chords import Chord
    from deepkeys.device.encoding import Composition

#: ``generate --max-bars``: 64 bars take seconds; the README's "limits" say why there is one.
DEFAULT_MAX_BARS = 64


def add_parsers(sub: Subcommands) -> None:
    p = add_command(
        sub, "generate", cmd_generate, help="accompany a MIDI melody: writes .mid, .wav and .png"
    )
    p.add_argument("input", type=Path, help="a MIDI file; its top line is the melody")
    p.add_argument("--genre", required=True)
    p.add_argument("--out", type=Path, required=True, help="output folder")
    p.add_argument(
        "--seed",
        type=seed,
        default=0,
        help="same seed, same output (default 0); -1 takes one from the clock and prints it",
    )
    p.add_argument(
        "--tempo",
        type=float,
        help=f"BPM, {TEMPO_MIN}..{TEMPO_MAX} (default: the input's tempo map)",
    )
    p.add_argument(
        "--temperature", type=temperature, help="0 = likeliest notes (default: the card's)"
    )
    p.add_argument("--no-wav", action="store_true", help="skip the audio rendering")
    p.add_argument(
        "--max-bars",
        type=int,
        default=DEFAULT_MAX_BARS,
        help=f"refuse a longer input (default {DEFAULT_MAX_BARS}: a 500-bar file would take "
        "a minute and a WAV of 200 MB)",
    )
    p.add_argument(
        "--chords",
        metavar="PROGRESSION",
        help='play these chords instead of the harmony step\'s: bars split by "|", one chord '
        'or two (half bars) a bar, e.g. "C | G | Am F | F G"; repeated to the melody\'s end',
    )
    add_models(p)

    p = add_command(
        sub, "demo", cmd_demo, help="accompany the bundled melodies in every installed genre"
    )
    p.add_argument("--out", type=Path, default=Path("demo-out"))
    p.add_argument("--seed", type=seed, default=0, help="-1 takes one from the clock")
    add_models(p)

    p = add_command(sub, "genres", cmd_genres, help="list the installed genre models")
    add_models(p)


def cmd_generate(args: argparse.Namespace) -> int:
    from deepkeys.device.generation.arrange import compose
    from deepkeys.device.generation.files import write_files
    from deepkeys.device.generation.generator import Generator
    from deepkeys.device.generation.library import card_path
    from deepkeys.device.generation.midifile import read_melody

    if args.tempo is not None and not TEMPO_MIN <= args.tempo <= TEMPO_MAX:
        raise UserError(f"--tempo {args.tempo:g} is outside {TEMPO_MIN}..{TEMPO_MAX} BPM")
    melody = read_melody(args.input)  # bad input fails here, before anything is written
    _check_meter(args.input, melody.meters)
    _check_length(args.input, melody.n_steps, args.max_bars)
    chords = _given_chords(args.chords, melody.n_steps) if args.chords is not None else None
    generator = Generator.from_card(card_path(args.genre, args.models))
    chosen_seed = resolve_seed(args.seed)
    comp = compose(
        melody,
        generator,
        seed=chosen_seed,
        tempo_bpm=args.tempo,
        temperature=args.temperature,
        chords=chords,
    )
    _check_tempi(args.input, comp, given=args.tempo is not None)
    paths = write_files(comp, args.out, f"{args.input.stem}-{args.genre}", wav=not args.no_wav)
    if args.seed == CLOCK_SEED:
        print(f"seed={chosen_seed}")  # what --seed replays this one
    for kind, path in paths.items():
        print(f"{kind}={path}")
    return 0


def _check_meter(source: Path, meters: list[tuple[int, int]]) -> None:
    """One line for a melody not in 4/4 throughout: the models' grid is 4/4, and a
    waltz put on it would be a silent 4/4 with its downbeats drifting (issue 12)."""
    other = [f"{a}/{b}" for a, b in meters if (a, b) != (4, 4)]
    if other:
        raise UserError(
            f"{source}: in {', '.join(dict.fromkeys(other))}; the installed models accompany "
            f"4/4 only, and a melody is not converted to 4/4 behind your back"
        )


def _check_length(source: Path, n_steps: int, max_bars: int) -> None:
    """One line for an input longer than ``--max-bars``, before any work is done."""
    from deepkeys.device.encoding import STEPS_PER_BAR

    bars = n_steps // STEPS_PER_BAR
    if max_bars < 1:
        raise UserError(f"--max-bars {max_bars}: give at least 1")
    if bars > max_bars:
        raise UserError(
            f"{source}: {bars} bars is longer than --max-bars {max_bars} "
            f"(pass --max-bars {bars} to accompany all of it)"
        )


def _check_tempi(source: Path, comp: Composition, given: bool) -> None:
    """The deepkeys tempo range (the panel's) holds for every tempo of the piece."""
    outside = [bpm for _, bpm in comp.tempo_map() if not TEMPO_MIN <= bpm <= TEMPO_MAX]
    if outside:
        whose = "with --tempo" if given else "in the file"
        raise UserError(
            f"{source}: a tempo of {outside[0]:g} BPM {whose} is outside "
            f"{TEMPO_MIN}..{TEMPO_MAX} BPM (set one with --tempo)"
        )


def _given_chords(text: str, n_steps: int) -> list[Chord]:
    """``--chords``: one chord per half bar, the progression repeated to cover ``n_steps``.

    >>> [c.name for c in _given_chords("C | G7 Am", 48)]
    ['C', 'C', 'G7', 'Am', 'C', 'C']
    """
    from deepkeys.device.chords import parse_progression
    from deepkeys.device.generation.harmony import CELL_STEPS

    cells = parse_progression(text)  # a bad name or bar: one UserError line
    needed = -(-n_steps // CELL_STEPS)
    return [cells[i % len(cells)] for i in range(needed)]


def cmd_demo(args: argparse.Namespace) -> int:
    from deepkeys.device.generation.arrange import compose
    from deepkeys.device.generation.files import write_files
    from deepkeys.device.generation.generator import Generator
    from deepkeys.device.generation.library import installed_genres
    from deepkeys.device.generation.midifile import read_melody

    genres = installed_genres(args.models)
    if not genres:
        raise UserError("no genre models installed (looked in models/ and the state directory)")
    melodies = sorted(BUNDLED_MELODIES.glob("*.mid"))
    chosen_seed = resolve_seed(args.seed)
    for genre, card in genres.items():
        generator = Generator.from_card(card)
        for source in melodies:
            comp = compose(read_melody(source), generator, seed=chosen_seed)
            paths = write_files(comp, args.out, f"{source.stem}-{genre}")
            print(
                f"genre={genre} melody={source.stem} "
                + " ".join(f"{k}={p}" for k, p in paths.items())
            )
    print(
        f"deepkeys demo: {len(genres) * len(melodies)} compositions in {args.out.resolve()} "
        f"(seed {chosen_seed})"
    )
    return 0


def cmd_genres(args: argparse.Namespace) -> int:
    from deepkeys.device.generation.card import load_card
    from deepkeys.device.generation.library import installed_genres

    for genre, path in installed_genres(args.models).items():
        try:
            card = load_card(path)
            print(f"{genre}\t{path}\t{', '.join(t.name for t in card.tracks)}")
        except UserError as exc:
            print(f"{genre}\t{path}\tBROKEN: {exc}")
    return 0
