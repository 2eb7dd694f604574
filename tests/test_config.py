"""The daemon configuration: defaults, a full file, and one clear line for every mistake."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

import pytest

from deepkeys.device.config import (
    DEFAULT_PATH,
    Config,
    PublishConfig,
    config_path,
    effective_config_text,
    load_config,
)
from deepkeys.device.errors import UserError
from deepkeys.device.generation.library import SHIPPED_MODELS

FULL = """\
[midi]
api = "jack"
input_ports = ["AKM322", "Keystation"]
virtual_port_name = "dk"

[audio]
device = "hw:CARD=Headphones"
rate = 44100
period = 256
periods = 3
soundfont = "/usr/share/sounds/sf2/FluidR3_GM.sf2"

[synth]
gain = 1          # an integer is a fine number
live_program = 4

[panel]
pin_factory = "mock"
genre_leds = [2, 3, 4]
debounce_ms = 5
long_press_ms = 800
repeat_ms = 100
buttons = { genre = 12, record = 16 }

[panel.leds]
busy = 25

[player]
tempo_bpm = 90
rhythm_assist = false
metronome = false
max_bars = 4
count_in_bars = 2
default_genre = "jazz"
first_seed = 42

[paths]
state_dir = "/srv/deepkeys"
socket = "/tmp/dk.sock"

[publish]
command = ["rsync", "{mid}", "{json}", "nas:/music/"]

[keyboard]
cc_play = 20
cc_stop = 21
cc_record = 22
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(text)
    return path


def error_of(tmp_path: Path, text: str) -> str:
    path = write(tmp_path, text)
    with pytest.raises(UserError) as info:
        load_config(path)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(f"{path}: ")
    return message[len(f"{path}: ") :]


# --------------------------------------------------------------------------- defaults
def test_the_defaults(tmp_path):
    config = Config()
    assert config.midi.api == "alsa" and config.midi.input_ports == ()
    assert (
        config.audio.device,
        config.audio.rate,
        config.audio.period,
        config.audio.periods,
        config.audio.soundfont,
    ) == ("default", 48000, 128, 2, "auto")
    assert (config.synth.gain, config.synth.live_program) == (0.5, 0)
    panel = config.panel
    assert dataclasses.asdict(panel.buttons) == {
        "genre": 5,
        "record": 6,
        "generate": 13,
        "play": 19,
        "tempo_down": 26,
        "tempo_up": 21,
    }
    assert dataclasses.asdict(panel.leds) == {"rec": 17, "busy": 27, "play": 22}
    assert (panel.pin_factory, panel.gpiozero_factory, panel.genre_leds) == ("auto", None, ())
    assert (panel.debounce_ms, panel.long_press_ms, panel.repeat_ms) == (20, 600, 150)
    player = config.player
    assert (
        player.tempo_bpm,
        player.rhythm_assist,
        player.metronome,
        player.max_bars,
        player.count_in_bars,
        player.default_genre,
        player.first_seed,
    ) == (100, True, True, 8, 1, "", -1)
    assert config.paths.state_dir == Path("/var/lib/deepkeys")
    assert config.paths.socket == Path("/run/deepkeys/control.sock")
    assert config.paths.models == (Path("/var/lib/deepkeys/models"), SHIPPED_MODELS)
    assert config.publish.command == ()
    assert (config.keyboard.cc_play, config.keyboard.cc_stop, config.keyboard.cc_record) == (
        105,
        106,
        107,
    )


def test_an_empty_file_gives_the_defaults(tmp_path):
    assert load_config(write(tmp_path, "")) == Config()
    assert load_config(write(tmp_path, "# nothing\n[audio]\n")) == Config()


def test_the_config_is_frozen():
    audio: Any = Config().audio  # Any: mypy would refuse the assignment made here on purpose
    with pytest.raises(dataclasses.FrozenInstanceError):
        audio.rate = 44100


def test_path_comes_from_the_environment(tmp_path, monkeypatch):
    monkeypatch.delenv("DEEPKEYS_CONFIG", raising=False)
    assert config_path() == DEFAULT_PATH == Path("/etc/deepkeys/config.toml")
    path = write(tmp_path, "[audio]\nperiod = 64\n")
    monkeypatch.setenv("DEEPKEYS_CONFIG", str(path))
    assert config_path() == path
    assert load_config().audio.period == 64
    assert config_path(tmp_path / "other.toml") == tmp_path / "other.toml"  # an argument wins


# --------------------------------------------------------------------------- a full file
def test_a_full_file(tmp_path):
    config = load_config(write(tmp_path, FULL))
    assert config.midi.api == "jack"
    assert config.midi.input_ports == ("AKM322", "Keystation")
    assert config.midi.virtual_port_name == "dk"
    assert (config.audio.device, config.audio.rate, config.audio.period, config.audio.periods) == (
        "hw:CARD=Headphones",
        44100,
        256,
        3,
    )
    assert config.audio.soundfont == "/usr/share/sounds/sf2/FluidR3_GM.sf2"
    assert config.synth.gain == 1.0 and isinstance(config.synth.gain, float)
    assert config.synth.live_program == 4
    panel = config.panel
    assert panel.pin_factory == panel.gpiozero_factory == "mock"
    assert panel.genre_leds == (2, 3, 4)
    assert (panel.debounce_ms, panel.long_press_ms, panel.repeat_ms) == (5, 800, 100)
    # A partial table keeps the other keys' defaults.
    assert (panel.buttons.genre, panel.buttons.record, panel.buttons.generate) == (12, 16, 13)
    assert (panel.leds.rec, panel.leds.busy, panel.leds.play) == (17, 25, 22)
    assert config.player.tempo_bpm == 90 and config.player.rhythm_assist is False
    assert (config.player.metronome, config.player.max_bars, config.player.count_in_bars) == (
        False,
        4,
        2,
    )
    assert config.player.default_genre == "jazz"
    assert config.player.first_seed == 42
    # The models follow state_dir unless set.
    assert config.paths.models == (Path("/srv/deepkeys/models"), SHIPPED_MODELS)
    assert config.paths.socket == Path("/tmp/dk.sock")
    assert config.publish.command == ("rsync", "{mid}", "{json}", "nas:/music/")
    assert (config.keyboard.cc_play, config.keyboard.cc_stop, config.keyboard.cc_record) == (
        20,
        21,
        22,
    )


def test_models_can_be_set(tmp_path):
    config = load_config(write(tmp_path, '[paths]\nmodels = ["/a", "/b"]\n'))
    assert config.paths.models == (Path("/a"), Path("/b"))


def test_publish_argv_fills_placeholders():
    publish = PublishConfig(("scp", "{mid}", "{json}", "host:{x}/"))
    assert publish.argv(Path("/s/a.mid"), "/s/a.json") == [
        "scp",
        "/s/a.mid",
        "/s/a.json",
        "host:{x}/",
    ]


def test_effective_config_round_trips(tmp_path):
    path = write(tmp_path, FULL)
    text = effective_config_text(path)
    assert text.startswith(f"# deepkeys effective configuration\n# {path}\n")
    assert "period = 256" in text and "[panel.buttons]" in text and "genre = 12" in text
    again = write(tmp_path, text)
    assert load_config(again) == load_config(path)


def test_a_missing_default_file_is_all_defaults_but_a_named_one_is_an_error(tmp_path, monkeypatch):
    import deepkeys.device.config as config_module

    monkeypatch.delenv("DEEPKEYS_CONFIG", raising=False)
    monkeypatch.setattr(config_module, "DEFAULT_PATH", tmp_path / "none.toml")
    text = effective_config_text()
    assert "(no such file: all defaults)" in text
    assert load_config(write(tmp_path, text)) == Config()
    # A typo in --config or $DEEPKEYS_CONFIG must not run on defaults without a word.
    with pytest.raises(UserError, match=r"typo.toml: no such config file \(named by --config\)"):
        load_config(tmp_path / "typo.toml")
    monkeypatch.setenv("DEEPKEYS_CONFIG", str(tmp_path / "typo.toml"))
    with pytest.raises(UserError, match=r"named by \$DEEPKEYS_CONFIG"):
        load_config()


def test_to_toml_names_every_key():
    text = Config().to_toml()
    for section in (
        "midi",
        "audio",
        "synth",
        "panel",
        "panel.buttons",
        "panel.leds",
        "player",
        "paths",
        "publish",
        "keyboard",
    ):
        assert f"\n[{section}]\n" in "\n" + text
    for key in (
        "api",
        "input_ports",
        "virtual_port_name",
        "device",
        "rate",
        "period",
        "periods",
        "soundfont",
        "gain",
        "live_program",
        "pin_factory",
        "genre_leds",
        "debounce_ms",
        "long_press_ms",
        "repeat_ms",
        "tempo_bpm",
        "rhythm_assist",
        "max_bars",
        "count_in_bars",
        "default_genre",
        "first_seed",
        "state_dir",
        "socket",
        "models",
        "command",
        "cc_play",
        "cc_stop",
        "cc_record",
        "tempo_down",
        "rec",
        "busy",
    ):
        assert f"\n{key} = " in text


# --------------------------------------------------------------------------- mistakes
@pytest.mark.parametrize(
    "text, message",
    [
        # a wrong type
        ('[audio]\nperiod = "fast"', 'audio.period must be an integer 16..4096, got "fast"'),
        ("[audio]\nperiod = 1.5", "audio.period must be an integer 16..4096, got 1.5"),
        ("[audio]\nperiod = true", "audio.period must be an integer 16..4096, got true"),
        ('[synth]\ngain = "loud"', 'synth.gain must be a number 0.0..10.0, got "loud"'),
        (
            '[player]\nrhythm_assist = "yes"',
            'player.rhythm_assist must be true or false, got "yes"',
        ),
        ("[player]\nrhythm_assist = 1", "player.rhythm_assist must be true or false, got 1"),
        (
            '[midi]\ninput_ports = "AKM322"',
            'midi.input_ports must be a list of strings, got "AKM322"',
        ),
        ("[midi]\ninput_ports = [1]", "midi.input_ports must be a list of strings, got [1]"),
        ("[audio]\ndevice = 3", "audio.device must be a non-empty string, got 3"),
        ('[audio]\ndevice = ""', 'audio.device must be a non-empty string, got ""'),
        ("[paths]\nstate_dir = 7", "paths.state_dir must be a path, got 7"),
        ("[paths]\nmodels = []", "paths.models must be a non-empty list of paths, got []"),
        (
            '[publish]\ncommand = "rsync {mid}"',
            'publish.command must be a list of strings (placeholders "{mid}", "{json}"), '
            'got "rsync {mid}"',
        ),
        ("[audio.rate]\nx = 1", "audio.rate must be an integer 8000..192000, got a table"),
        ("midi = 3", "midi must be a table ([midi]), got 3"),
        ("[panel]\nbuttons = 5", "panel.buttons must be a table ([panel.buttons]), got 5"),
        # out of range, or not one of the choices
        ("[audio]\nperiod = 8", "audio.period must be an integer 16..4096, got 8"),
        ("[audio]\nperiods = 1", "audio.periods must be an integer 2..16, got 1"),
        ("[synth]\ngain = -0.1", "synth.gain must be a number 0.0..10.0, got -0.1"),
        ("[synth]\ngain = nan", "synth.gain must be a number 0.0..10.0, got nan"),
        (
            "[synth]\nlive_program = 128",
            "synth.live_program must be a GM program number 0..127, got 128",
        ),
        ("[player]\ntempo_bpm = 300", "player.tempo_bpm must be an integer 40..240, got 300"),
        ("[player]\nmax_bars = 0", "player.max_bars must be an integer 1..32, got 0"),
        (
            "[player]\nfirst_seed = -2",
            "player.first_seed must be an integer 0..999999, or -1, got -2",
        ),
        ("[player]\ncount_in_bars = 5", "player.count_in_bars must be an integer 0..4, got 5"),
        (
            "[panel.buttons]\ngenre = 40",
            "panel.buttons.genre must be a BCM pin number 0..27, got 40",
        ),
        (
            "[panel]\ngenre_leds = [2, 3, 4, 7, 8, 9, 10, 11, 12]",
            "panel.genre_leds must be a list of at most 8 BCM pin numbers 0..27, "
            "got [2, 3, 4, 7, 8, 9, 10, 11, 12]",
        ),
        (
            "[panel]\ngenre_leds = [2, 99]",
            "panel.genre_leds must be a list of at most 8 BCM pin numbers 0..27, got [2, 99]",
        ),
        (
            "[keyboard]\ncc_play = 200",
            "keyboard.cc_play must be a MIDI controller number 0..127, got 200",
        ),
        (
            '[midi]\napi = "coreaudio"',
            'midi.api must be one of "alsa", "jack", "sim", got "coreaudio"',
        ),
        (
            '[panel]\npin_factory = "gpio"',
            'panel.pin_factory must be one of "auto", "lgpio", "rpigpio", "pigpio", "native", '
            '"mock", got "gpio"',
        ),
        # unknown keys
        ("[audio]\nperoid = 64", "unknown key audio.peroid (did you mean audio.period?)"),
        ("[audoi]\nperiod = 64", "unknown key audoi (did you mean audio?)"),
        (
            "[panel.buttons]\nshift = 4",
            "unknown key panel.buttons.shift "
            "(known: genre, record, generate, play, tempo_down, tempo_up)",
        ),
        (
            "volume = 3",
            "unknown key volume (known: midi, audio, synth, panel, player, paths, publish, "
            "keyboard)",
        ),
        # rules across keys
        (
            "[panel.leds]\nbusy = 13",
            "panel.leds.busy must be a pin not used elsewhere, got 13 "
            "(already panel.buttons.generate)",
        ),
        (
            "[panel]\ngenre_leds = [17]",
            "panel.genre_leds[0] must be a pin not used elsewhere, got 17 (already panel.leds.rec)",
        ),
        (
            "[keyboard]\ncc_stop = 105",
            "keyboard.cc_stop must differ from keyboard.cc_play, got 105",
        ),
        (
            '[publish]\ncommand = ["cp", "{wav}", "/x"]',
            'publish.command may only use the placeholders "{mid}" and "{json}", got "{wav}"',
        ),
    ],
)
def test_each_mistake_is_one_line_naming_file_key_and_expectation(tmp_path, text, message):
    assert error_of(tmp_path, text + "\n") == message


@pytest.mark.parametrize(
    "text",
    [
        "[audio\nperiod = 64",  # an unclosed table header
        "[audio]\nperiod = ",  # a missing value
        "[audio]\nperiod = 64\nperiod = 65",  # a key twice
        '[audio]\ndevice = "unterminated',  # a string that never ends
    ],
)
def test_bad_toml_is_one_line(tmp_path, text):
    message = error_of(tmp_path, text + "\n")
    assert message.startswith("not valid TOML: ")
    assert "line" in message


def test_a_file_that_is_not_text(tmp_path):
    path = tmp_path / "config.toml"
    path.write_bytes(b"\xff\xfe[audio]\n")
    with pytest.raises(UserError, match=r"config.toml: not valid TOML"):
        load_config(path)


def test_a_folder_is_not_a_config_file(tmp_path):
    with pytest.raises(UserError, match=r": is a folder, not a config file$"):
        load_config(tmp_path)


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any file")
def test_an_unreadable_file(tmp_path):
    path = write(tmp_path, "")
    path.chmod(0)
    with pytest.raises(UserError, match=r": permission denied$"):
        load_config(path)


def test_a_default_genre_that_is_not_installed_fails_the_check(tmp_path):
    from conftest import run_cli

    models = f'[paths]\nmodels = ["{SHIPPED_MODELS}"]\n'
    path = write(tmp_path, models + '[player]\ndefault_genre = "nope"\n')
    result = run_cli("config", "--config", str(path))
    assert result.returncode == 2
    assert "player.default_genre = 'nope' is not installed (installed: " in result.stderr
    assert "Traceback" not in result.stderr
    path = write(tmp_path, models + '[player]\ndefault_genre = "rock"\n')
    assert run_cli("config", "--config", str(path)).returncode == 0
