"""``deepkeys generate``, ``demo`` and ``genres``: accompaniments from MIDI files, no daemon.

The generation modules (the model interpreter, the synth) are imported inside the handlers,
so that ``deepkeys --help`` and the other commands do not load them.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from deepkeys.device.cli.options import Subcommands, add_command, add_models
from deepkeys.device.errors import UserError
from deepkeys.device.resources import BUNDLED_MELODIES

if TYPE_CHECKING:
    from deepkeys.device.chords import Chord


def add_parsers(sub: Subcommands) -> None:
    p = add_command(
        sub, "generate", cmd_generate, help="accompany a MIDI melody: writes .mid, .wav and .png"
    )
    p.add_argument("input", type=Path, help="a MIDI file; its top line is the melody")
    p.add_argument("--genre", required=True)
    p.add_argument("--out", type=Path, required=True, help="output folder")
    p.add_argument("--seed", type=int, default=0, help="same seed, same output (default 0)")
    p.add_argument("--tempo", type=float, help="BPM (default: the input's tempo)")
    p.add_argument("--temperature", type=float, help="0 = likeliest notes (default: the card's)")
    p.add_argument("--no-wav", action="store_true", help="skip the audio rendering")
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
    p.add_argument("--seed", type=int, default=0)
    add_models(p)

    p = add_command(sub, "genres", cmd_genres, help="list the installed genre models")
    add_models(p)


def cmd_generate(args: argparse.Namespace) -> int:
    from deepkeys.device.generation.arrange import compose
    from deepkeys.device.generation.files import write_files
    from deepkeys.device.generation.generator import Generator
    from deepkeys.device.generation.library import card_path
    from deepkeys.device.generation.midifile import read_melody

    melody = read_melody(args.input)  # bad input fails here, before anything is written
    chords = _given_chords(args.chords, melody.n_steps) if args.chords is not None else None
    generator = Generator.from_card(card_path(args.genre, args.models))
    if args.tempo is not None and not 20 <= args.tempo <= 300:
        raise UserError(f"--tempo {args.tempo:g} is outside 20..300 BPM")
    comp = compose(
        melody,
        generator,
        seed=args.seed,
        tempo_bpm=args.tempo,
        temperature=args.temperature,
        chords=chords,
    )
    paths = write_files(comp, args.out, f"{args.input.stem}-{args.genre}", wav=not args.no_wav)
    for kind, path in paths.items():
        print(f"{kind}={path}")
    return 0


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
    for genre, card in genres.items():
        generator = Generator.from_card(card)
        for source in melodies:
            comp = compose(read_melody(source), generator, seed=args.seed)
            paths = write_files(comp, args.out, f"{source.stem}-{genre}")
            print(
                f"genre={genre} melody={source.stem} "
                + " ".join(f"{k}={p}" for k, p in paths.items())
            )
    print(f"deepkeys demo: {len(genres) * len(melodies)} compositions in {args.out.resolve()}")
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
