"""Offline rendering of a composition to a WAV file with FluidSynth.

No audio driver is started: we pull samples from the synth ourselves, as fast as
the CPU allows, and step through the same :func:`composition_events` that the
MIDI writer uses, so what you hear is what the .mid file holds.

>>> rtf = render_wav(comp, "song.wav")      # doctest: +SKIP
>>> rtf > 1.0                               # faster than real time  # doctest: +SKIP
True
"""

from __future__ import annotations

import contextlib
import io
import os
import time
import wave
from pathlib import Path
from typing import Any

import mido

from deepkeys.device.atomic import atomic_open
from deepkeys.device.encoding import Composition
from deepkeys.device.errors import UserError
from deepkeys.device.generation.midifile import composition_events, track_channel

# Debian's General MIDI SoundFonts, smallest first: TimGM6mb (6 MB) suits the Pi.
SOUNDFONT_CANDIDATES = (
    Path("/usr/share/sounds/sf2/TimGM6mb.sf2"),
    Path("/usr/share/sounds/sf2/default-GM.sf2"),
    Path("/usr/share/sounds/sf2/FluidR3_GM.sf2"),
)
SOUNDFONT_ENV = "DEEPKEYS_SOUNDFONT"
RELEASE_TAIL_S = 1.5  # let the last notes ring out and the reverb decay
DRUM_BANK = 128  # the General MIDI percussion bank in a SoundFont
GAIN = 0.5  # four parts at full velocity stay (mostly) below clipping


def default_soundfont() -> Path:
    """The General MIDI SoundFont to play with.

    ``$DEEPKEYS_SOUNDFONT`` wins if set (and must exist); otherwise the first of
    Debian's SoundFonts that is installed.
    """
    override = os.environ.get(SOUNDFONT_ENV)
    if override:
        path = Path(override)
        if not path.is_file():
            raise UserError(f"{SOUNDFONT_ENV}={override}: no such SoundFont file")
        return path
    for path in SOUNDFONT_CANDIDATES:
        if path.is_file():
            return path
    raise UserError("no General MIDI SoundFont found; install timgm6mb-soundfont")


def import_fluidsynth() -> Any:
    """The pyfluidsynth module, or a one-line UserError if it or libfluidsynth is missing.

    Imported lazily so that reading and writing MIDI never needs libfluidsynth.
    pyfluidsynth prints where it found the library to *stdout* when ``$CI`` is set;
    that line would corrupt our key=value output, so it is swallowed.
    """
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            import fluidsynth
    except (ImportError, OSError):
        raise UserError("FluidSynth is not available; install libfluidsynth3 and pyfluidsynth") from None
    return fluidsynth


def render_wav(
    comp: Composition,
    path: str | os.PathLike[str],
    soundfont: str | os.PathLike[str] | None = None,
    rate: int = 48000,
    block: int = 256,
) -> float:
    """Render the composition to a 16-bit stereo WAV file, atomically.

    The audio lasts the composition plus a short release tail. Returns the
    real-time factor: seconds of audio made per second of wall time.
    """
    fluidsynth = import_fluidsynth()
    if block <= 0 or rate <= 0:
        raise ValueError("rate and block must be positive")
    font = Path(soundfont) if soundfont is not None else default_soundfont()
    _check_soundfont(font)

    began = time.perf_counter()
    events = composition_events(comp)
    last_event = events[-1][0] if events else 0.0
    total_frames = round((max(comp.seconds, last_event) + RELEASE_TAIL_S) * rate)

    synth = fluidsynth.Synth(gain=GAIN, samplerate=float(rate))
    try:
        sfid = synth.sfload(str(font))
        if sfid < 0:
            raise UserError(f"{font}: FluidSynth cannot load this SoundFont")
        for index, track in enumerate(comp.tracks):
            channel = track_channel(comp, index)
            bank = DRUM_BANK if track.is_drum else 0
            synth.program_select(channel, sfid, bank, track.program if not track.is_drum else 0)

        with atomic_open(path) as f, wave.open(f, "wb") as out:
            out.setnchannels(2)
            out.setsampwidth(2)
            out.setframerate(rate)
            done = 0
            pending = iter(events)
            upcoming = next(pending, None)
            while done < total_frames:
                # Play every event that is due, then render up to the next one (at most a block).
                while upcoming is not None and round(upcoming[0] * rate) <= done:
                    _play(synth, sfid, upcoming[1])
                    upcoming = next(pending, None)
                stop = done + block
                if upcoming is not None:
                    stop = min(stop, round(upcoming[0] * rate))
                stop = min(stop, total_frames)
                # get_samples gives interleaved int16 stereo, native byte order (little on a Pi).
                out.writeframes(synth.get_samples(stop - done).astype("<i2").tobytes())
                done = stop
    finally:
        synth.delete()
    return (total_frames / rate) / max(time.perf_counter() - began, 1e-9)


def _check_soundfont(font: Path) -> None:
    """Refuse a missing or non-SoundFont file before FluidSynth logs its own errors."""
    try:
        with open(font, "rb") as f:
            head = f.read(12)
    except OSError:
        raise UserError(f"{font}: no such SoundFont file") from None
    # A SoundFont 2 file is a RIFF container of form type "sfbk".
    if head[:4] != b"RIFF" or head[8:12] != b"sfbk":
        raise UserError(f"{font}: not a SoundFont (.sf2) file")


def _play(synth: Any, sfid: int, msg: mido.Message) -> None:
    """Send one mido message to the synth."""
    if msg.type == "note_on":
        synth.noteon(msg.channel, msg.note, msg.velocity)
    elif msg.type == "note_off":
        synth.noteoff(msg.channel, msg.note)
    elif msg.type == "program_change":
        synth.program_select(msg.channel, sfid, 0, msg.program)
