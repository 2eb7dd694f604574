"""The daemon's configuration: one TOML file, every key with a default.

The file is ``/etc/deepkeys/config.toml``; ``$DEEPKEYS_CONFIG`` or an explicit
path overrides it. A missing default file simply means "all defaults"; a missing
file named by either is an error. A file only needs the keys it changes:

    [audio]
    device = "hw:CARD=Headphones"
    period = 256

    [panel.buttons]
    genre = 12

The result is a tree of frozen dataclasses, one per ``[section]``:

>>> config = Config()  # what a missing /etc/deepkeys/config.toml gives
>>> config.audio.period, config.panel.buttons.genre, config.player.tempo_bpm
(128, 5, 100)

Anything wrong with the file (bad TOML, an unknown key, a wrong type, a value out
of range) is one :class:`UserError` line that names the file, the key and what
was expected::

    config.toml: audio.period must be an integer 16..4096, got "fast"

``effective_config_text()`` prints every key with its effective value, as
``deepkeys config`` shows it; that text is itself a valid config file.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import math
import os
import re
import time
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from deepkeys.device.errors import UserError, one_line
from deepkeys.device.resources import SHIPPED_MODELS

DEFAULT_PATH = Path("/etc/deepkeys/config.toml")
CONFIG_ENV = "DEEPKEYS_CONFIG"

TEMPO_MIN, TEMPO_MAX = 40, 240  # BPM; the panel's TEMPO buttons clamp to this range too
MAX_GENRE_LEDS = 8
PLACEHOLDERS = ("{mid}", "{json}")
CLOCK_SEED = -1  # player.first_seed and generate's --seed: take the seed from the clock


def resolve_seed(seed: int) -> int:
    """``seed`` itself, or for :data:`CLOCK_SEED` one from the clock (0..999999, another
    each second)."""
    return int(time.time()) % 1_000_000 if seed == CLOCK_SEED else seed


# --------------------------------------------------------------------------- value checks
class _Bad(Exception):
    """A value did not pass its check; the loader adds the file and key."""


@dataclass(frozen=True)
class _Check:
    """What one key accepts. ``what`` completes "KEY must be ..."."""

    what: str

    def __call__(self, value: Any) -> Any:
        raise NotImplementedError


@dataclass(frozen=True)
class _Int(_Check):
    lo: int = 0
    hi: int = 0

    def __call__(self, value: Any) -> int:
        # bool is an int in Python, but `period = true` is surely a mistake.
        if isinstance(value, bool) or not isinstance(value, int) or not self.lo <= value <= self.hi:
            raise _Bad
        return value


@dataclass(frozen=True)
class _Float(_Check):
    lo: float = 0.0
    hi: float = 0.0

    def __call__(self, value: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise _Bad
        if not (math.isfinite(value) and self.lo <= value <= self.hi):
            raise _Bad
        return float(value)


@dataclass(frozen=True)
class _Bool(_Check):
    def __call__(self, value: Any) -> bool:
        if not isinstance(value, bool):
            raise _Bad
        return value


@dataclass(frozen=True)
class _Str(_Check):
    choices: tuple[str, ...] = ()
    empty_ok: bool = True

    def __call__(self, value: Any) -> str:
        if not isinstance(value, str) or (self.choices and value not in self.choices):
            raise _Bad
        if not value and not self.empty_ok:
            raise _Bad
        return value


@dataclass(frozen=True)
class _Path(_Check):
    def __call__(self, value: Any) -> Path:
        if not isinstance(value, str) or not value.strip():
            raise _Bad
        return Path(value)


@dataclass(frozen=True)
class _List(_Check):
    item: _Check = field(default_factory=lambda: _Str("a string"))
    min_len: int = 0
    max_len: int = 1 << 16

    def __call__(self, value: Any) -> tuple[Any, ...]:
        if not isinstance(value, list) or not self.min_len <= len(value) <= self.max_len:
            raise _Bad
        return tuple(self.item(v) for v in value)


def _choice(*options: str) -> _Str:
    return _Str("one of " + ", ".join(json.dumps(o) for o in options), choices=options)


def _key(default: Any, check: _Check, doc: str = "") -> Any:
    """A config key: its default, what it accepts, and a one-line comment for `deepkeys config`."""
    if isinstance(default, (list, tuple)):
        return field(default_factory=lambda: tuple(default), metadata={"check": check, "doc": doc})
    return field(default=default, metadata={"check": check, "doc": doc})


_PIN = _Int("a BCM pin number 0..27", 0, 27)
_CC = _Int("a MIDI controller number 0..127", 0, 127)


# --------------------------------------------------------------------------- the tree
@dataclass(frozen=True)
class MidiConfig:
    api: str = _key(
        "alsa",
        _choice("alsa", "jack", "sim"),
        "python-rtmidi on the ALSA sequencer or JACK; sim = an in-process port",
    )
    input_ports: tuple[str, ...] = _key(
        (),
        _List("a list of strings"),
        "open inputs whose name contains one of these; [] = all hardware inputs",
    )
    virtual_port_name: str = _key(
        "deepkeys", _Str("a non-empty string", empty_ok=False), "the daemon's own MIDI port"
    )


@dataclass(frozen=True)
class AudioConfig:
    device: str = _key("default", _Str("a non-empty string", empty_ok=False), "ALSA PCM name")
    rate: int = _key(48000, _Int("an integer 8000..192000", 8000, 192000), "sample rate, Hz")
    period: int = _key(128, _Int("an integer 16..4096", 16, 4096), "frames per ALSA period")
    periods: int = _key(2, _Int("an integer 2..16", 2, 16), "periods in the ALSA buffer")
    soundfont: str = _key(
        "auto",
        _Str("a non-empty string", empty_ok=False),
        '"auto" = $DEEPKEYS_SOUNDFONT or the first Debian GM SoundFont, else a .sf2 path',
    )


@dataclass(frozen=True)
class SynthConfig:
    gain: float = _key(0.5, _Float("a number 0.0..10.0", 0.0, 10.0), "FluidSynth master gain")
    live_program: int = _key(
        0, _Int("a GM program number 0..127", 0, 127), "the instrument the keys play live"
    )


@dataclass(frozen=True)
class ButtonPins:
    genre: int = _key(5, _PIN)
    record: int = _key(6, _PIN)
    generate: int = _key(13, _PIN)
    play: int = _key(19, _PIN)
    tempo_down: int = _key(26, _PIN)
    tempo_up: int = _key(21, _PIN)


@dataclass(frozen=True)
class LedPins:
    rec: int = _key(17, _PIN)
    busy: int = _key(27, _PIN)
    play: int = _key(22, _PIN)


@dataclass(frozen=True)
class PanelConfig:
    pin_factory: str = _key(
        "auto",
        _choice("auto", "lgpio", "rpigpio", "pigpio", "native", "mock"),
        "gpiozero pin factory; auto = gpiozero's choice, mock = no hardware",
    )
    debounce_ms: int = _key(20, _Int("an integer 0..1000", 0, 1000))
    long_press_ms: int = _key(600, _Int("an integer 100..10000", 100, 10000))
    repeat_ms: int = _key(
        150, _Int("an integer 20..2000", 20, 2000), "TEMPO held: one step per this"
    )
    genre_leds: tuple[int, ...] = _key(
        (),
        _List(
            f"a list of at most {MAX_GENRE_LEDS} BCM pin numbers 0..27",
            _PIN,
            max_len=MAX_GENRE_LEDS,
        ),
        "one LED per genre slot, in the order of the installed genres",
    )
    buttons: ButtonPins = field(default_factory=ButtonPins)
    leds: LedPins = field(default_factory=LedPins)

    @property
    def gpiozero_factory(self) -> str | None:
        """The factory name to give gpiozero; ``None`` (for "auto") lets gpiozero choose:
        $GPIOZERO_PIN_FACTORY, else the first of lgpio, rpigpio, pigpio, native that loads."""
        return None if self.pin_factory == "auto" else self.pin_factory


@dataclass(frozen=True)
class PlayerConfig:
    tempo_bpm: int = _key(100, _Int(f"an integer {TEMPO_MIN}..{TEMPO_MAX}", TEMPO_MIN, TEMPO_MAX))
    rhythm_assist: bool = _key(
        True,
        _Bool("true or false"),
        "save takes snapped to the 16th grid; false = as played (the model always reads the grid)",
    )
    metronome: bool = _key(
        True, _Bool("true or false"), "click while recording too (the count-in always clicks)"
    )
    max_bars: int = _key(8, _Int("an integer 1..32", 1, 32), "recording stops by itself after this")
    count_in_bars: int = _key(1, _Int("an integer 0..4", 0, 4))
    default_genre: str = _key("", _Str("a string"), '"" = the first installed genre')
    split_note: int = _key(
        0,
        _Int("a MIDI note 0..127", 0, 127),
        "keys below this note, held while recording, are chord hints (as on an arranger "
        "keyboard) and the keys above it the melody; 0 = off, 60 = middle C",
    )
    first_seed: int = _key(
        CLOCK_SEED,
        _Int("an integer 0..999999, or -1", CLOCK_SEED, 999_999),
        "the first generation's seed, the next ones count up; "
        "-1 = from the clock (new variations after each start)",
    )


@dataclass(frozen=True)
class PathsConfig:
    state_dir: Path = _key(
        Path("/var/lib/deepkeys"), _Path("a path"), "compositions, takes and deployed models"
    )
    socket: Path = _key(Path("/run/deepkeys/control.sock"), _Path("a path"))
    models: tuple[Path, ...] = _key(
        (),
        _List("a non-empty list of paths", _Path("a path"), min_len=1),
        "genre model folders, earliest wins; default [state_dir/models, shipped models]",
    )
    min_free_mb: int = _key(
        64,
        _Int("an integer 0..100000", 0, 100_000),
        "a take or composition is not saved (logged and counted) when state_dir has less "
        "free space than this, so the SD card never fills",
    )

    def __post_init__(self) -> None:
        # The default follows state_dir, so moving state_dir moves the deployed models with it.
        if not self.models:
            object.__setattr__(self, "models", (self.state_dir / "models", SHIPPED_MODELS))


@dataclass(frozen=True)
class PublishConfig:
    """``command`` runs, never through a shell, after each saved composition. An argument
    that is exactly "{mid}" or "{json}" becomes that file's path; a placeholder inside a
    longer argument is refused, since a file name (it holds the genre's) must never turn
    into shell code. The paths are also in the command's environment as $DEEPKEYS_MID and
    $DEEPKEYS_JSON: ``["sh", "-c", 'cp "$DEEPKEYS_MID" /srv/music/']``."""

    command: tuple[str, ...] = _key(
        (),
        _List('a list of strings (placeholders "{mid}", "{json}")'),
        'run after each saved composition, e.g. ["rsync", "{mid}", "nas:/music/"]; "{mid}" '
        'and "{json}" only as whole arguments (or "$DEEPKEYS_MID" and "$DEEPKEYS_JSON" in '
        '["sh", "-c", ...]); [] = none',
    )

    def argv(self, mid: str | os.PathLike[str], json_path: str | os.PathLike[str]) -> list[str]:
        """The command for one saved composition, whole-argument placeholders filled in.

        >>> PublishConfig(("cp", "{mid}", "/srv/")).argv("/x/a.mid", "/x/a.json")
        ['cp', '/x/a.mid', '/srv/']
        """
        paths = {"{mid}": str(mid), "{json}": str(json_path)}
        return [paths.get(a, a) for a in self.command]

    @staticmethod
    def env(mid: str | os.PathLike[str], json_path: str | os.PathLike[str]) -> dict[str, str]:
        """The same paths for the command's environment (use them quoted in a shell)."""
        return {"DEEPKEYS_MID": str(mid), "DEEPKEYS_JSON": str(json_path)}


@dataclass(frozen=True)
class KeyboardConfig:
    cc_play: int = _key(105, _CC, "transport CCs of the AWS DeepComposer keyboard")
    cc_stop: int = _key(106, _CC)
    cc_record: int = _key(107, _CC)


@dataclass(frozen=True)
class Config:
    midi: MidiConfig = field(default_factory=MidiConfig)
    audio: AudioConfig = field(default_factory=AudioConfig)
    synth: SynthConfig = field(default_factory=SynthConfig)
    panel: PanelConfig = field(default_factory=PanelConfig)
    player: PlayerConfig = field(default_factory=PlayerConfig)
    paths: PathsConfig = field(default_factory=PathsConfig)
    publish: PublishConfig = field(default_factory=PublishConfig)
    keyboard: KeyboardConfig = field(default_factory=KeyboardConfig)

    def to_toml(self) -> str:
        """Every key with its value, as a TOML file with a comment per key."""
        lines: list[str] = []
        _emit(self, "", lines)
        return "\n".join(lines).strip() + "\n"


# --------------------------------------------------------------------------- loading
def hardware_free_config(
    state_dir: str | os.PathLike[str],
    socket: str | os.PathLike[str],
    models: Sequence[str | os.PathLike[str]] | None = None,
    panel: str = "",
    extra: str = "",
) -> str:
    """A config for a machine without the appliance's hardware: sim MIDI, the null audio
    device and mock pins. ``panel`` adds lines to [panel]; ``extra`` adds sections. Paths
    are quoted as TOML strings, so any character in them is safe.

    >>> print(hardware_free_config("/tmp/s", "/tmp/c.sock").splitlines()[-2])
    state_dir = "/tmp/s"
    """
    lines = [
        "[midi]",
        'api = "sim"',
        "[audio]",
        'device = "null"',
        "[panel]",
        'pin_factory = "mock"',
        *panel.splitlines(),
        "[paths]",
        f"state_dir = {json.dumps(str(state_dir))}",
        f"socket = {json.dumps(str(socket))}",
    ]
    if models is not None:
        lines.append(f"models = [{', '.join(json.dumps(str(m)) for m in models)}]")
    return "\n".join(lines) + "\n" + extra


def config_path(path: str | os.PathLike[str] | None = None) -> Path:
    """The file to read: ``path``, else ``$DEEPKEYS_CONFIG``, else /etc/deepkeys/config.toml."""
    if path is not None:
        return Path(path)
    return Path(os.environ.get(CONFIG_ENV) or DEFAULT_PATH)


def load_config(path: str | os.PathLike[str] | None = None) -> Config:
    """Read and check the configuration. A missing default file gives the defaults; a
    file named by ``path`` or ``$DEEPKEYS_CONFIG`` must exist (a typo must not run the
    appliance on defaults without a word)."""
    file = config_path(path)
    try:
        with open(file, "rb") as f:
            data = tomllib.load(f)
    except FileNotFoundError:
        if path is not None or os.environ.get(CONFIG_ENV):
            named = "--config" if path is not None else f"${CONFIG_ENV}"
            raise UserError(f"{file}: no such config file (named by {named})") from None
        return Config()
    except IsADirectoryError:
        raise UserError(f"{file}: is a folder, not a config file") from None
    except PermissionError:
        raise UserError(f"{file}: permission denied") from None
    except UnicodeDecodeError:
        raise UserError(f"{file}: not valid TOML: not UTF-8 text") from None
    except tomllib.TOMLDecodeError as exc:
        raise UserError(f"{file}: not valid TOML: {one_line(exc)}") from None
    try:
        config = _build(Config, data, "")
        _check_whole(config)
    except _Problem as problem:
        raise UserError(f"{file}: {problem}") from None
    return config


def effective_config_text(path: str | os.PathLike[str] | None = None) -> str:
    """What ``deepkeys config`` prints: where the file is, then every effective key."""
    file = config_path(path)
    config = load_config(path)
    where = f"# {file}" if file.exists() else f"# {file} (no such file: all defaults)"
    return f"# deepkeys effective configuration\n{where}\n\n{config.to_toml()}"


class _Problem(Exception):
    """One line about one key, without the file name."""


def _build(cls: type, data: Any, prefix: str) -> Any:
    """Make dataclass ``cls`` from the TOML table ``data``; defaults fill what is missing."""
    where = prefix.rstrip(".")
    if not isinstance(data, dict):
        raise _Problem(f"{where} must be a table ([{where}]), got {_show(data)}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    values: dict[str, Any] = {}
    for name, value in data.items():
        key = prefix + name
        if name not in fields:
            raise _Problem(_unknown(key, name, fields))
        f = fields[name]
        if dataclasses.is_dataclass(f.default_factory):
            values[name] = _build(f.default_factory, value, key + ".")
            continue
        check: _Check = f.metadata["check"]
        try:
            values[name] = check(value)
        except _Bad:
            raise _Problem(f"{key} must be {check.what}, got {_show(value)}") from None
    return cls(**values)


def _unknown(key: str, name: str, fields: dict[str, Any]) -> str:
    parent = key[: -len(name)]
    close = difflib.get_close_matches(name, list(fields), n=1)
    hint = f"did you mean {parent}{close[0]}?" if close else "known: " + ", ".join(fields)
    return f"unknown key {key} ({hint})"


def _check_whole(config: Config) -> None:
    """Rules across keys: each GPIO pin used once, distinct transport CCs, known placeholders."""
    panel = config.panel
    pins: dict[int, str] = {}
    uses = [
        (f"panel.buttons.{f.name}", getattr(panel.buttons, f.name))
        for f in dataclasses.fields(ButtonPins)
    ]
    uses += [
        (f"panel.leds.{f.name}", getattr(panel.leds, f.name)) for f in dataclasses.fields(LedPins)
    ]
    uses += [(f"panel.genre_leds[{i}]", pin) for i, pin in enumerate(panel.genre_leds)]
    for key, pin in uses:
        if pin in pins:
            raise _Problem(
                f"{key} must be a pin not used elsewhere, got {pin} (already {pins[pin]})"
            )
        pins[pin] = key

    ccs: dict[int, str] = {}
    for f in dataclasses.fields(KeyboardConfig):
        cc = getattr(config.keyboard, f.name)
        if cc in ccs:
            raise _Problem(f"keyboard.{f.name} must differ from keyboard.{ccs[cc]}, got {cc}")
        ccs[cc] = f.name

    for i, arg in enumerate(config.publish.command):
        for placeholder in re.findall(r"\{[A-Za-z_]*\}", arg):
            if placeholder not in PLACEHOLDERS:
                raise _Problem(
                    f'publish.command may only use the placeholders "{{mid}}" and '
                    f'"{{json}}", got {_show(placeholder)}'
                )
            if arg != placeholder:  # a path spliced into a shell string could run as code
                raise _Problem(
                    f'publish.command[{i}] may hold "{{mid}}" or "{{json}}" only as a whole '
                    'argument (inside a shell command use "$DEEPKEYS_MID" and '
                    f'"$DEEPKEYS_JSON"), got {_show(arg)}'
                )


# --------------------------------------------------------------------------- writing
def _emit(node: Any, prefix: str, lines: list[str]) -> None:
    subsections = []
    for f in dataclasses.fields(node):
        value = getattr(node, f.name)
        if dataclasses.is_dataclass(value):
            subsections.append((f.name, value))
            continue
        doc = f.metadata.get("doc")
        lines.append(f"{f.name} = {_toml(value)}" + (f"  # {doc}" if doc else ""))
    for name, sub in subsections:
        lines += ["", f"[{prefix}{name}]"]
        _emit(sub, f"{prefix}{name}.", lines)


def _toml(value: Any) -> str:
    """A TOML literal for a config value.

    >>> _toml(True), _toml(0.5), _toml(("a", "{mid}")), _toml(Path("/x"))
    ('true', '0.5', '["a", "{mid}"]', '"/x"')
    """
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k} = {_toml(v)}" for k, v in value.items()) + "}"
    # JSON string escapes are valid TOML basic-string escapes.
    return json.dumps(str(value), ensure_ascii=False)


def _show(value: Any) -> str:
    """A value as the user wrote it, short enough for one line."""
    if isinstance(value, dict):
        return "a table"
    text = _toml(value) if isinstance(value, (bool, int, float, str, list)) else str(value)
    return text if len(text) <= 60 else text[:57] + "..."
