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
import json
import logging
import sys
from pathlib import Path

from deepkeys.device.errors import UserError
from deepkeys.device.resources import BUNDLED_MELODIES

HOST_COMMANDS = {"train", "export", "evaluate"}
HOST_EXTRA_HINT = "pip install 'deepkeys[host]'"
# events.BUTTONS, spelled out here so that `deepkeys --help` imports nothing else.
BUTTON_NAMES = ("genre", "record", "generate", "play", "tempo_down", "tempo_up")


def _add_models(p: argparse.ArgumentParser) -> None:
    p.add_argument("--models", metavar="DIR", help="look for genre models here first")


def _add_data(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", type=Path, metavar="FOLDER",
                   help="a folder of your own MIDI files (default: the genre's shipped recipe)")
    p.add_argument("--melody-track", metavar="NAME",
                   help="with --data: the melody track's name (default: the top monophonic line)")


def _add_config(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", metavar="PATH",
                   help="config file (default: $DEEPKEYS_CONFIG or /etc/deepkeys/config.toml)")


def _add_socket(p: argparse.ArgumentParser) -> None:
    _add_config(p)
    p.add_argument("--socket", metavar="PATH", help="control socket (default: paths.socket)")


def _add_remote(p: argparse.ArgumentParser) -> None:
    p.add_argument("-F", "--ssh-config", metavar="FILE", help="ssh_config for ssh -F")
    p.add_argument("--remote-deepkeys", metavar="CMD",
                   help="how to run deepkeys on the device (default: $DEEPKEYS_REMOTE or "
                        "'sudo -n -u deepkeys /opt/deepkeys/.venv/bin/deepkeys')")
    p.add_argument("--remote-config", metavar="PATH", help="the device's config file")


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

    p = sub.add_parser("bench", help="measure speed on this machine (no WHAT: all of them)")
    p.add_argument("--quick", action="store_true",
                   help="with no WHAT: fewer runs of each, for a smoke test")
    bench = p.add_subparsers(dest="what", required=False, metavar="WHAT")
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
    b = bench.add_parser("e2e", help="[test rig] key into JACK -> onset in the captured audio,"
                                     " through the whole daemon")
    b.add_argument("--period", type=int, action="append", metavar="FRAMES",
                   help="JACK period, repeatable (default: 64 and 128)")
    b.add_argument("--notes", type=int, default=200)
    b.add_argument("--out", type=Path, help="also write the markdown table here")

    p = sub.add_parser("hil", help="[test rig] the hardware-in-the-loop suite, here or on a "
                                   "device over SSH; arguments after -- go to pytest")
    p.add_argument("--target", metavar="ssh://USER@HOST", help="run it on this device")
    p.add_argument("-F", "--ssh-config", metavar="FILE", help="ssh_config for ssh -F")
    p.add_argument("--remote-prefix", default="/opt/deepkeys", metavar="PATH",
                   help="the device's deepkeys checkout (default: /opt/deepkeys)")
    p.add_argument("--remote-python", metavar="PATH",
                   help="the device's Python (default: PREFIX/.venv/bin/python)")
    p.add_argument("pytest_args", nargs=argparse.REMAINDER, metavar="-- PYTEST_ARGS")

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

    # --- maintenance over SSH (on the device) and deploying (from the workstation)
    p = sub.add_parser("doctor", help="check the appliance: a pass/fail table, exit 1 on a failure")
    _add_config(p)

    p = sub.add_parser("logs", help="the daemon's journal (journalctl)")
    p.add_argument("--since", metavar="WHEN", help='e.g. "1 hour ago", "today", "2025-01-31"')
    p.add_argument("-n", "--lines", type=int, metavar="N", help="only the last N lines")
    p.add_argument("-f", "--follow", action="store_true", help="keep printing new lines")

    p = sub.add_parser("tone", help="play a test chord through the configured audio output")
    _add_config(p)
    p.add_argument("--device", metavar="PCM", help="ALSA PCM (default: audio.device)")
    p.add_argument("--seconds", type=float, default=1.5)

    p = sub.add_parser("buttons", help="light each LED in turn, then show each button pressed")
    _add_config(p)
    p.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for presses")

    p = sub.add_parser("install", help="set up this Pi: packages, user, venv, config, service")
    p.add_argument("--dry-run", action="store_true", help="print what it would do, change nothing")
    p.add_argument("--prefix", type=Path, help="the code folder (default: this checkout)")
    p.add_argument("--root", type=Path, default=Path("/"), help=argparse.SUPPRESS)

    p = sub.add_parser("deploy", help="copy models to a device over SSH, verify, activate, reload")
    p.add_argument("dest", metavar="USER@HOST")
    p.add_argument("--models", nargs="+", metavar="GENRE", help="default: every card in --from")
    p.add_argument("--from", dest="source", type=Path, default=Path("models"),
                   help="folder with <genre>.json + <genre>.tflite (default: models)")
    _add_remote(p)

    p = sub.add_parser("rollback", help="make the previous deployed version of a genre active")
    p.add_argument("genre")
    p.add_argument("--host", metavar="USER@HOST", help="roll back on this device over SSH")
    _add_config(p)
    _add_remote(p)

    # Hidden: the device end of `deploy`, fed a tar of models on stdin over ssh.
    p = sub.add_parser("receive")
    _add_config(p)
    p.add_argument("--expect", action="append", default=[], metavar="GENRE=SHA256")

    p = sub.add_parser("train", help="[host] train a genre model (chorale, an MMA style, or "
                                     "your own MIDI files with --data)")
    p.add_argument("--genre", required=True)
    p.add_argument("--epochs", type=int, default=60)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--resume", action="store_true", help="continue from the last checkpoint")
    p.add_argument("--run-dir", type=Path, help="default: runs/<genre>")
    _add_data(p)

    p = sub.add_parser("export", help="[host] int8 LiteRT model + card from a training run")
    p.add_argument("--genre", required=True)
    p.add_argument("--run-dir", type=Path, help="default: runs/<genre>")
    p.add_argument("--out", type=Path, default=Path("models"))
    _add_data(p)

    p = sub.add_parser("evaluate", help="[host] metrics on held-out data vs real and shuffled; "
                                        "several --genre also compare the genres")
    p.add_argument("--genre", required=True, action="append",
                   help="a genre to evaluate; repeat to tell genres apart")
    _add_data(p)
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
    from deepkeys.device.generation.arrange import compose, save
    from deepkeys.device.generation.generator import Generator
    from deepkeys.device.generation.midifile import read_melody
    from deepkeys.device.generation.library import card_path

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
    from deepkeys.device.generation.arrange import compose, save
    from deepkeys.device.generation.generator import Generator
    from deepkeys.device.generation.midifile import read_melody
    from deepkeys.device.generation.library import installed_genres

    genres = installed_genres(args.models)
    if not genres:
        raise UserError("no genre models installed (looked in models/ and the state directory)")
    melodies = sorted(BUNDLED_MELODIES.glob("*.mid"))
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
    from deepkeys.device.generation.card import load_card
    from deepkeys.device.generation.library import installed_genres

    for genre, path in installed_genres(args.models).items():
        try:
            card = load_card(path)
            print(f"{genre}\t{path}\t{', '.join(t.name for t in card.tracks)}")
        except UserError as exc:
            print(f"{genre}\t{path}\tBROKEN: {exc}")
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    from deepkeys.device.maintenance.bench import bench_generate, bench_latency, bench_startup, bench_synth

    if args.what is None:  # plain `deepkeys bench`: every benchmark, at its defaults
        quick = {"generate": ["--runs", "20"], "latency": ["--notes", "50"],
                 "synth": ["--seconds", "1"], "startup": ["--runs", "1"]}
        parser = build_parser()
        for what, fewer in quick.items():
            cmd_bench(parser.parse_args(["bench", what, *(fewer if args.quick else [])]))
            print()
        return 0
    if args.what == "latency":
        bench_latency(notes=args.notes, period=args.period, device=args.device)
        return 0
    if args.what == "startup":
        bench_startup(runs=args.runs, config=args.config)
        return 0
    if args.what == "synth":
        bench_synth(voices=args.voices, seconds=args.seconds)
        return 0
    if args.what == "e2e":
        return _bench_e2e(args)
    result = bench_generate(args.genre, runs=args.runs, threads=args.threads,
                            models=args.models)
    if importlib.util.find_spec("tensorflow") is not None:
        _quiet_tensorflow()
        commands = importlib.import_module("deepkeys.host.commands")
        commands.bench_float(result, runs=args.runs)
    else:
        print(f"float32 Keras: not measured here (needs the host tools: {HOST_EXTRA_HINT})")
    return 0


def _bench_e2e(args: argparse.Namespace) -> int:
    """The HIL rig's latency bench; it needs jackd2 and the test extra (JACK-Client)."""
    if importlib.util.find_spec("jack") is None:
        raise UserError("'deepkeys bench e2e' needs the test rig: pip install 'deepkeys[hil]'"
                        " and apt install jackd2")
    if args.notes < 1:
        raise UserError(f"--notes must be at least 1, got {args.notes}")
    from deepkeys.hil.jackd import JackUnavailable
    from deepkeys.hil.latency import bench_e2e

    try:
        bench_e2e(tuple(args.period or (64, 128)), notes=args.notes, out=args.out)
    except JackUnavailable as exc:
        raise UserError(str(exc)) from None
    return 0


def cmd_hil(args: argparse.Namespace) -> int:
    if importlib.util.find_spec("pytest") is None and args.target is None:
        raise UserError("'deepkeys hil' needs the test rig: pip install 'deepkeys[hil]'"
                        " and apt install jackd2")
    from deepkeys.hil.target import run_hil

    pytest_args = args.pytest_args[1:] if args.pytest_args[:1] == ["--"] else args.pytest_args
    return run_hil(pytest_args, args.target, prefix=args.remote_prefix,
                   python=args.remote_python, ssh_config=args.ssh_config)


def cmd_run(args: argparse.Namespace) -> int:
    from deepkeys.device.config import load_config
    from deepkeys.device.appliance.daemon import run_daemon

    return run_daemon(load_config(args.config))


def _client(args: argparse.Namespace):
    from deepkeys.device.config import load_config
    from deepkeys.device.adapters.control import ControlClient

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
    from deepkeys.device.config import effective_config_text

    print(effective_config_text(args.config), end="")
    return 0


def cmd_sim(args: argparse.Namespace) -> int:
    from deepkeys.device.config import load_config
    from deepkeys.device.appliance.sim import run_sim

    if not sys.stdin.isatty() or not sys.stdout.isatty():
        raise UserError("'deepkeys sim' needs a terminal")
    return run_sim(load_config(args.config), wav=args.wav)


def cmd_doctor(args: argparse.Namespace) -> int:
    from deepkeys.device.maintenance.doctor import format_table, run_checks

    rows = run_checks(args.config)
    print(format_table(rows))
    return 1 if any(r.ok is False for r in rows) else 0


def cmd_logs(args: argparse.Namespace) -> int:
    from deepkeys.device.maintenance.logs import show_logs

    return show_logs(since=args.since, follow=args.follow, lines=args.lines)


def cmd_tone(args: argparse.Namespace) -> int:
    from deepkeys.device.config import load_config
    from deepkeys.device.maintenance.tone import CHORD, play_tone

    stats = play_tone(load_config(args.config), device=args.device, seconds=args.seconds)
    print(f"tone: notes={','.join(map(str, CHORD))} device={stats.device} rate={stats.rate} "
          f"period={stats.period} periods_written={stats.periods_written} "
          f"underruns={stats.underruns} errors={stats.errors}")
    return 0 if stats.errors == 0 else 1


def cmd_buttons(args: argparse.Namespace) -> int:
    from deepkeys.device.config import load_config
    from deepkeys.device.adapters.control import ControlClient
    from deepkeys.device.events import BUTTONS
    from deepkeys.device.maintenance.buttons import panel_test

    cfg = load_config(args.config)
    try:
        ControlClient(cfg.paths.socket, timeout=2.0).request("status")
    except UserError:
        pass  # not running: the pins are free
    else:
        raise UserError("the daemon holds the panel's pins: stop it first "
                        "(sudo systemctl stop deepkeys), then run this again")
    missing = [b for b in BUTTONS if b not in panel_test(cfg, timeout=args.timeout)]
    if missing:
        print(f"buttons: not pressed within {args.timeout:g} s: {', '.join(missing)}")
        return 1
    print("buttons: every button works")
    return 0


def cmd_install(args: argparse.Namespace) -> int:
    import os

    from deepkeys.device.maintenance.install import REPO, Paths, System, plan, run_steps

    if not args.dry_run and args.root == Path("/") and os.geteuid() != 0:
        raise UserError("'deepkeys install' changes the system: run it with sudo "
                        "(or see what it would do with --dry-run)")
    paths = Paths(root=args.root, prefix=(args.prefix or REPO).resolve())
    run_steps(plan(paths, System()), dry_run=args.dry_run)
    return 0


def cmd_deploy(args: argparse.Namespace) -> int:
    from deepkeys.device.maintenance.deploy import deploy

    print(deploy(args.dest, args.models, args.source, remote=args.remote_deepkeys,
                 remote_config=args.remote_config, ssh_config=args.ssh_config), end="")
    return 0


def cmd_rollback(args: argparse.Namespace) -> int:
    if args.host:
        from deepkeys.device.maintenance.deploy import run_remote

        extra = ["--config", args.remote_config] if args.remote_config else []
        print(run_remote(args.host, ["rollback", args.genre, *extra],
                         remote=args.remote_deepkeys, ssh_config=args.ssh_config), end="")
        return 0
    from deepkeys.device.config import load_config
    from deepkeys.device.maintenance.store import ModelStore

    cfg = load_config(args.config)
    sha = ModelStore(cfg.paths.state_dir).rollback(args.genre)
    print(f"genre={args.genre} sha256={sha} status=active")
    _reload_daemon(cfg)
    return 0


def cmd_receive(args: argparse.Namespace) -> int:
    from deepkeys.device.config import load_config
    from deepkeys.device.maintenance.store import ModelStore

    cfg = load_config(args.config)
    expect = {}
    for item in args.expect:
        genre, sep, sha = item.rpartition("=")
        if not sep or not genre:
            raise UserError(f"--expect {item!r}: expected GENRE=SHA256")
        expect[genre] = sha
    results = ModelStore(cfg.paths.state_dir).receive(sys.stdin.buffer, expect)
    for r in results:
        status = "active" if r.activated else "refused"
        print(f"genre={r.genre} sha256={r.sha256 or '-'} status={status}"
              + (f" error={json.dumps(r.error)}" if r.error else ""))
    if any(r.activated for r in results):
        _reload_daemon(cfg)
    refused = [r for r in results if not r.activated]
    if refused:
        raise UserError("; ".join(f"{r.genre}: {r.error}" for r in refused)
                        + " (not activated; the previous version stays)")
    return 0


def _reload_daemon(cfg) -> None:
    """Ask the running daemon to rescan its models; fine if it is not running."""
    from deepkeys.device.adapters.control import ControlClient

    try:
        reply = ControlClient(cfg.paths.socket, timeout=30.0).request("reload")
    except UserError as exc:
        print(f"daemon=not_reloaded reason={json.dumps(str(exc))} "
              "(it loads the models when it starts)")
        return
    if not reply.get("ok"):
        raise UserError(f"the daemon refused to reload: {reply.get('error')}")
    print(f"daemon=reloaded genres={','.join(reply['genres']) or '-'}")
    for genre, error in reply.get("errors", {}).items():
        print(f"daemon_error genre={genre} error={json.dumps(error)}")


COMMANDS = {"generate": cmd_generate, "demo": cmd_demo, "genres": cmd_genres,
            "bench": cmd_bench, "hil": cmd_hil, "run": cmd_run, "status": cmd_status,
            "press": cmd_press,
            "monitor": cmd_monitor, "config": cmd_config, "sim": cmd_sim,
            "doctor": cmd_doctor, "logs": cmd_logs, "tone": cmd_tone, "buttons": cmd_buttons,
            "install": cmd_install, "deploy": cmd_deploy, "rollback": cmd_rollback,
            "receive": cmd_receive}

