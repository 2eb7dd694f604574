"""Offline rendering of a composition to a WAV file with FluidSynth.

No audio driver is started: we pull samples from the synth ourselves, as fast as
the CPU allows, and step through the same :func:`~deepkeys.device.timeline.composition_events`
that the MIDI writer uses, so what you hear is what the .mid file holds.

>>> rtf = render_wav(comp, "song.wav")      # doctest: +SKIP
>>> rtf > 1.0                               # faster than real time  # doctest: +SKIP
True
"""

from __future__ import annotations

import os
import time
import wave
from typing import Any

from deepkeys.device.atomic import atomic_open
from deepkeys.device.encoding import Composition
from deepkeys.device.errors import UserError
from deepkeys.device.gm import DRUM_BANK, NOTE_OFF, NOTE_ON, PROGRAM
from deepkeys.device.soundfont import GAIN, import_fluidsynth, resolve_soundfont
from deepkeys.device.timeline import composition_events, track_channel

RELEASE_TAIL_S = 1.5  # let the last notes ring out and the reverb decay


WAV_RATE = 48000
WAV_FRAME_BYTES = 4  # 16-bit stereo


def wav_bytes(comp: Composition, rate: int = WAV_RATE) -> int:
    """About how large :func:`render_wav` makes the file of ``comp``: what to look for
    on the disk before rendering.

    >>> wav_bytes(Composition([], 64, 120.0))        # 8 s and the release tail
    1824000
    """
    return round((comp.seconds + RELEASE_TAIL_S) * rate) * WAV_FRAME_BYTES


def render_wav(
    comp: Composition,
    path: str | os.PathLike[str],
    soundfont: str | os.PathLike[str] | None = None,
    rate: int = WAV_RATE,
    block: int = 256,
) -> float:
    """Render the composition to a 16-bit stereo WAV file, atomically.

    The audio lasts the composition plus a short release tail. Returns the
    real-time factor: seconds of audio made per second of wall time.
    """
    fluidsynth = import_fluidsynth()
    if block <= 0 or rate <= 0:
        raise ValueError("rate and block must be positive")
    font = resolve_soundfont(soundfont)

    began = time.perf_counter()
    events = [
        (round(comp.seconds_at(beat) * rate), *rest) for beat, *rest in composition_events(comp)
    ]
    last_event = events[-1][0] / rate if events else 0.0
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
                while upcoming is not None and upcoming[0] <= done:
                    _play(synth, sfid, *upcoming[1:])
                    upcoming = next(pending, None)
                stop = done + block
                if upcoming is not None:
                    stop = min(stop, upcoming[0])
                stop = min(stop, total_frames)
                # get_samples gives interleaved int16 stereo, native byte order (little on a Pi).
                out.writeframes(synth.get_samples(stop - done).astype("<i2").tobytes())
                done = stop
    finally:
        synth.delete()
    return (total_frames / rate) / max(time.perf_counter() - began, 1e-9)


def _play(synth: Any, sfid: int, status: int, channel: int, data1: int, data2: int) -> None:
    """Send one timeline event to the synth."""
    if status == NOTE_ON:
        synth.noteon(channel, data1, data2)
    elif status == NOTE_OFF:
        synth.noteoff(channel, data1)
    elif status == PROGRAM:
        synth.program_select(channel, sfid, 0, data1)
