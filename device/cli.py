"""The ``deepkeys`` command: one entry point, one subcommand per job.

Device subcommands run with the device install alone. Host subcommands (train,
export, evaluate) live in ``deepkeys.host`` and are imported only when called, so
the device never loads TensorFlow; without the host extra they say what to
install.

User errors are one line on stderr and exit status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import logging
import sys
from pathlib import Path

from .errors import UserError

HOST_COMMANDS = {"train", "export", "evaluate"}
HOST_EXTRA_HINT = "pip install 'deepkeys[host]'"
# events.BUTTONS, spelled out here so that `deepkeys --help` imports nothing else.
BUTTON_NAMES = ("genre", "record", "generate", "play", "tempo_down", "tempo_up")


def _add_models(p: argparse.ArgumentParser) -> None:
    p.add_argument("--models", metavar="DIR", help="look for genre models here first")


def _add_config(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", metavar="PATH",
                   help="config file (default: $DEEPKEYS_CONFIG or /etc/deepkeys/config.toml)")


def _add_socket(p: argparse.ArgumentParser) -> None:
    _add_config(p)
    p.add_argument("--socket", metavar="PATH", help="control socket (default: paths.socket)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="deepkeys", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug lines")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("generate", help="accompany a MIDI melody: writes .mid, .wav and .png")
    p.add_argument("input", type=Path, help="a MIDI file; its top line is the melody")
    p.add_argument("--genre", required=True)
    p.add_argument("--out", type=Path, required=True, help="output folder")
    p.add_argument("--seed", type=int, default=0, help="same seed, same output (default 0)")
    p.add_argument("--tempo", type=float, help="BPM (default: the input's tempo)")
    p.add_argument("--temperature", type=float, help="0 = likeliest notes (default: the card's)")
    p.add_argument("--no-wav", action="store_true", help="skip the audio rendering")
    _add_models(p)

    p = sub.add_parser("demo", help="accompany the bundled melodies in every installed genre")
    p.add_argument("--out", type=Path, default=Path("demo-out"))
    p.add_argument("--seed", type=int, default=0)
    _add_models(p)

    p = sub.add_parser("genres", help="list the installed genre models")
    _add_models(p)

    p = sub.add_parser("bench", help="measure speed on this machine")
    bench = p.add_subparsers(dest="what", required=True, metavar="WHAT")
    b = bench.add_parser("generate", help="one generation: int8 LiteRT vs float32 Keras")
    b.add_argument("--genre", default="chorale")
    b.add_argument("--runs", type=int, default=200)
    b.add_argument("--threads", type=int, default=1)
    _add_models(b)
    b = bench.add_parser("latency", help="key to audio through the synth and the audio thread")
    b.add_argument("--notes", type=int, default=500)
    b.add_argument("--period", type=int, default=128, help="frames per ALSA period")
    b.add_argument("--device", default="null", help="ALSA PCM (default: null, paced)")
    b = bench.add_parser("startup", help="start to READY and memory, as systemd starts it")
    b.add_argument("--runs", type=int, default=5)
    b.add_argument("--config", help="default: a hardware-free config")
    b = bench.add_parser("synth", help="synth headroom: simultaneous voices x real time")
    b.add_argument("--voices", type=int, default=32)
    b.add_argument("--seconds", type=float, default=10.0)

    p = sub.add_parser("run", help="run the appliance daemon (what systemd starts)")
    _add_config(p)

    p = sub.add_parser("status", help="what the running daemon is doing")
    _add_socket(p)

    p = sub.add_parser("press", help="press a panel button on the running daemon")
    p.add_argument("button", help="one of: " + ", ".join(BUTTON_NAMES))
    p.add_argument("--long", action="store_true", help="a long press (GENRE: backwards)")
    _add_socket(p)

    p = sub.add_parser("monitor", help="print the daemon's events live, until Ctrl-C")
    _add_socket(p)

    p = sub.add_parser("config", help="print the effective configuration")
    _add_config(p)

    p = sub.add_parser("sim", help="the daemon on a desktop, played from the computer keyboard")
    _add_config(p)
    p.add_argument("--wav", metavar="FILE", help="write the sound to this WAV file instead")

    p = sub.add_parser("train", help="[host] train a genre model")
    p.add_argument("--genre", required=True)
    p.add_argument("--epochs", type=int, default=60)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--resume", action="store_true", help="continue from the last checkpoint")
    p.add_argument("--run-dir", type=Path, help="default: runs/<genre>")

    p = sub.add_parser("export", help="[host] int8 LiteRT model + card from a training run")
    p.add_argument("--genre", required=True)
    p.add_argument("--run-dir", type=Path, help="default: runs/<genre>")
    p.add_argument("--out", type=Path, default=Path("models"))

    p = sub.add_parser("evaluate", help="[host] metrics on held-out data vs real and shuffled")
    p.add_argument("--genre", required=True)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--temperature", type=float, help="default: the card's")
    _add_models(p)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="level=%(levelname)s logger=%(name)s %(message)s")
    try:
        if args.command in HOST_COMMANDS:
            return _host_command(args)
        return COMMANDS[args.command](args) or 0
    except UserError as exc:
        print(f"deepkeys: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


def _host_command(args: argparse.Namespace) -> int:
    missing = [m for m in ("tensorflow", "music21") if importlib.util.find_spec(m) is None]
    if missing:
        raise UserError(f"'deepkeys {args.command}' runs on the workstation and needs "
                        f"{', '.join(missing)}: {HOST_EXTRA_HINT}")
    _quiet_tensorflow()
    commands = importlib.import_module("deepkeys.host.commands")
    return getattr(commands, args.command)(args) or 0


def _quiet_tensorflow() -> None:
    """TensorFlow's C++ start-up chatter would bury our key=value lines."""
    import os
    import warnings

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    warnings.filterwarnings("ignore", module="tensorflow")
    warnings.filterwarnings("ignore", module="keras")


# --- device commands ----------------------------------------------------------------
def cmd_generate(args: argparse.Namespace) -> int:
    from .compose import compose, save
    from .generator import Generator
    from .midifile import read_melody
    from .models import card_path

    melody = read_melody(args.input)  # bad input fails here, before anything is written
    generator = Generator.from_card(card_path(args.genre, args.models))
    if args.tempo is not None and not 20 <= args.tempo <= 300:
        raise UserError(f"--tempo {args.tempo:g} is outside 20..300 BPM")
    comp = compose(melody, generator, seed=args.seed, tempo_bpm=args.tempo,
                   temperature=args.temperature)
    paths = save(comp, args.out, f"{args.input.stem}-{args.genre}", wav=not args.no_wav)
    for kind, path in paths.items():
        print(f"{kind}={path}")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from .compose import compose, save
    from .generator import Generator
    from .midifile import read_melody
    from .models import installed_genres

    genres = installed_genres(args.models)
    if not genres:
        raise UserError("no genre models installed (looked in models/ and the state directory)")
    melodies = sorted((Path(__file__).parent / "melodies").glob("*.mid"))
    for genre, card in genres.items():
        generator = Generator.from_card(card)
        for source in melodies:
            comp = compose(read_melody(source), generator, seed=args.seed)
            paths = save(comp, args.out, f"{source.stem}-{genre}")
            print(f"genre={genre} melody={source.stem} " +
                  " ".join(f"{k}={p}" for k, p in paths.items()))
    print(f"deepkeys demo: {len(genres) * len(melodies)} compositions in {args.out.resolve()}")
    return 0


def cmd_genres(args: argparse.Namespace) -> int:
    from .card import load_card
    from .models import installed_genres

    for genre, path in installed_genres(args.models).items():
        try:
            card = load_card(path)
            print(f"{genre}\t{path}\t{', '.join(t.name for t in card.tracks)}")
        except UserError as exc:
            print(f"{genre}\t{path}\tBROKEN: {exc}")
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    from .bench import bench_generate, bench_latency, bench_startup, bench_synth

    if args.what == "latency":
        bench_latency(notes=args.notes, period=args.period, device=args.device)
        return 0
    if args.what == "startup":
        bench_startup(runs=args.runs, config=args.config)
        return 0
    if args.what == "synth":
        bench_synth(voices=args.voices, seconds=args.seconds)
        return 0
    result = bench_generate(args.genre, runs=args.runs, threads=args.threads,
                            models=args.models)
    if importlib.util.find_spec("tensorflow") is not None:
        _quiet_tensorflow()
        commands = importlib.import_module("deepkeys.host.commands")
        commands.bench_float(result, runs=args.runs)
    else:
        print(f"float32 Keras: not measured here (needs the host tools: {HOST_EXTRA_HINT})")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from .config import load_config
    from .daemon import run_daemon

    return run_daemon(load_config(args.config))


def _client(args: argparse.Namespace):
    from .config import load_config
    from .control import ControlClient

    path = args.socket or load_config(args.config).paths.socket
    return ControlClient(path)


def _ask(args: argparse.Namespace, cmd: str, **fields) -> dict:
    reply = _client(args).request(cmd, **fields)
    if not reply.get("ok"):
        raise UserError(reply.get("error", "the daemon refused"))
    return reply


def cmd_status(args: argparse.Namespace) -> int:
    reply = _ask(args, "status")
    reply.pop("ok", None)
    for line in format_status(reply):
        print(line)
    return 0


def format_status(status: dict) -> list[str]:
    """The status dict as aligned ``key: value`` lines; nested dicts become ``a.b``.

    >>> format_status({"state": "idle", "audio": {"underruns": 0}})
    ['state           idle', 'audio.underruns 0']
    """
    flat: list[tuple[str, object]] = []

    def walk(prefix: str, value: object) -> None:
        if isinstance(value, dict) and value and prefix != "midi.counts":
            for k, v in value.items():
                walk(f"{prefix}.{k}" if prefix else str(k), v)
        elif isinstance(value, dict):
            flat.append((prefix, " ".join(f"{k}={v}" for k, v in value.items()) or "-"))
        elif isinstance(value, list):
            flat.append((prefix, ", ".join(map(str, value)) or "-"))
        else:
            flat.append((prefix, "-" if value is None else value))

    walk("", status)
    width = max((len(k) for k, _ in flat), default=0)
    return [f"{k:<{width}} {v}" for k, v in flat]


def cmd_press(args: argparse.Namespace) -> int:
    if args.button not in BUTTON_NAMES:
        raise UserError(f"unknown button {args.button!r} (known: {', '.join(BUTTON_NAMES)})")
    _ask(args, "press", button=args.button, kind="long" if args.long else "press")
    return 0


def cmd_monitor(args: argparse.Namespace) -> int:
    stream = _client(args).stream()
    try:
        for item in stream:
            print(" ".join(f"{k}={_monitor_value(v)}" for k, v in item.items()), flush=True)
    except KeyboardInterrupt:
        return 0
    finally:
        stream.close()
    raise UserError("the daemon closed the monitor stream (it stopped?)")


def _monitor_value(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.3f}"
    text = str(value)
    return text if text and not any(c.isspace() for c in text) else repr(text)


def cmd_config(args: argparse.Namespace) -> int:
    from .config import effective_config_text

    print(effective_config_text(args.config), end="")
    return 0


def cmd_sim(args: argparse.Namespace) -> int:
    from .config import load_config
    from .sim import run_sim

    if not sys.stdin.isatty() or not sys.stdout.isatty():
        raise UserError("'deepkeys sim' needs a terminal")
    return run_sim(load_config(args.config), wav=args.wav)


COMMANDS = {"generate": cmd_generate, "demo": cmd_demo, "genres": cmd_genres,
            "bench": cmd_bench, "run": cmd_run, "status": cmd_status, "press": cmd_press,
            "monitor": cmd_monitor, "config": cmd_config, "sim": cmd_sim}

if __name__ == "__main__":
    sys.exit(main())
