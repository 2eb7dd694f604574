"""Offline rendering with FluidSynth: the right format, length, pitch and timing."""

from __future__ import annotations

import os
import wave
from pathlib import Path

import numpy as np
import pytest

from deepkeys.device import soundfont
from deepkeys.device.encoding import Composition, Note, Track
from deepkeys.device.errors import UserError
from deepkeys.device.generation import render

pytest.importorskip("fluidsynth", reason="pyfluidsynth (and libfluidsynth3) not installed")


def read_wav(path: Path) -> tuple[np.ndarray, int]:
    """Samples as a (frames, 2) float array in -1..1, and the sample rate."""
    with wave.open(str(path), "rb") as w:
        assert w.getnchannels() == 2
        assert w.getsampwidth() == 2
        data = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").reshape(-1, 2)
        return data.astype(np.float64) / 32768.0, w.getframerate()


def dominant_hz(samples: np.ndarray, rate: int) -> float:
    mono = samples.mean(axis=1) * np.hanning(len(samples))
    spectrum = np.abs(np.fft.rfft(mono))
    return float(np.fft.rfftfreq(len(mono), 1 / rate)[np.argmax(spectrum)])


def test_a440_on_piano(tmp_path: Path, soundfont: Path) -> None:
    # One bar at 120 bpm (2 s); A4 sounds for the first half note (1 s).
    comp = Composition([Track("melody", 0, [Note(69, 0, 8, 100)])], 16, 120.0)
    path = tmp_path / "a440.wav"
    rtf = render.render_wav(comp, path, soundfont)
    assert rtf > 1.0  # offline rendering must beat real time by far

    samples, rate = read_wav(path)
    assert rate == 48000
    assert len(samples) / rate == pytest.approx(2.0 + render.RELEASE_TAIL_S, abs=1e-3)
    sounding = samples[int(0.05 * rate) : int(0.95 * rate)]
    assert np.sqrt(np.mean(sounding**2)) > 0.01  # clearly audible
    assert np.abs(samples).max() < 0.99  # and not clipped
    assert dominant_hz(sounding, rate) == pytest.approx(440.0, rel=0.01)
    # Long after the release the piano has died away.
    assert np.abs(samples[-int(0.1 * rate) :]).max() < 0.01


def test_rests_render_silence(tmp_path: Path, soundfont: Path) -> None:
    comp = Composition([Track("melody", 0), Track("drums", 0, is_drum=True, channel=9)], 32, 100.0)
    path = tmp_path / "rest.wav"
    render.render_wav(comp, path, soundfont)
    samples, rate = read_wav(path)
    assert len(samples) / rate == pytest.approx(comp.seconds + render.RELEASE_TAIL_S, abs=1e-3)
    assert np.abs(samples).max() < 1e-3  # dither at most


def test_note_starts_where_the_swung_grid_says(tmp_path: Path, soundfont: Path) -> None:
    # Swing 2/3 at 120 bpm puts the off-beat 8th (step 2) at 1/3 s instead of 1/4 s.
    comp = Composition([Track("melody", 0, [Note(69, 2, 4, 110)])], 16, 120.0, swing=2 / 3)
    path = tmp_path / "swing.wav"
    render.render_wav(comp, path, soundfont)
    samples, rate = read_wav(path)
    loud = np.flatnonzero(np.abs(samples).max(axis=1) > 0.01)
    assert loud[0] / rate == pytest.approx(1 / 3, abs=0.01)


def test_drums_and_several_tracks_sound(tmp_path: Path, soundfont: Path) -> None:
    drums = Composition(
        [Track("drums", 0, [Note(38, 0, 1, 120)], is_drum=True, channel=9)], 16, 120.0
    )
    path = tmp_path / "drums.wav"
    render.render_wav(drums, path, soundfont)
    samples, _ = read_wav(path)
    assert np.abs(samples).max() > 0.02  # the GM snare from the percussion bank

    chord = [Note(p, 0, 16, 127) for p in (48, 55, 60, 64)]
    four = Composition(
        [
            Track("melody", 0, [Note(72, 0, 16, 127)]),
            Track("bass", 33, [Note(36, 0, 16, 127)], channel=1),
            Track("chords", 0, chord, channel=2),
            Track(
                "drums",
                0,
                [Note(36, s, s + 1, 127) for s in range(0, 16, 2)],
                is_drum=True,
                channel=9,
            ),
        ],
        16,
        120.0,
    )
    path = tmp_path / "four.wav"
    render.render_wav(four, path, soundfont)
    samples, _ = read_wav(path)
    # Four parts at full velocity: loud, and clipping is rare at gain 0.5.
    assert np.abs(samples).max() > 0.1
    assert np.mean(np.abs(samples) > 0.999) < 0.001


def test_default_soundfont_search(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    font = tmp_path / "mine.sf2"
    font.write_bytes(b"RIFF")
    monkeypatch.setenv(soundfont.SOUNDFONT_ENV, str(font))
    assert soundfont.default_soundfont() == font

    monkeypatch.setenv(soundfont.SOUNDFONT_ENV, str(tmp_path / "gone.sf2"))
    with pytest.raises(UserError, match=r"gone.sf2"):
        soundfont.default_soundfont()

    monkeypatch.delenv(soundfont.SOUNDFONT_ENV)
    second = tmp_path / "second.sf2"
    second.write_bytes(b"RIFF")
    monkeypatch.setattr(soundfont, "SOUNDFONT_CANDIDATES", (tmp_path / "first.sf2", second))
    assert soundfont.default_soundfont() == second

    monkeypatch.setattr(soundfont, "SOUNDFONT_CANDIDATES", (tmp_path / "first.sf2",))
    with pytest.raises(UserError) as info:
        soundfont.default_soundfont()
    assert str(info.value) == "no General MIDI SoundFont found; install timgm6mb-soundfont"


def test_bad_soundfont_is_a_user_error_and_writes_nothing(tmp_path: Path) -> None:
    comp = Composition([Track("melody", 0, [Note(60, 0, 4)])], 16, 120.0)
    out = tmp_path / "out.wav"
    with pytest.raises(UserError, match=r"missing.sf2"):
        render.render_wav(comp, out, tmp_path / "missing.sf2")
    junk = tmp_path / "junk.sf2"
    junk.write_bytes(b"this is not a soundfont")
    with pytest.raises(UserError, match=r"junk.sf2: not a SoundFont"):
        render.render_wav(comp, out, junk)
    damaged = tmp_path / "damaged.sf2"
    damaged.write_bytes(b"RIFF\x00\x10\x00\x00sfbkLIST")  # the right header, nothing after it
    with pytest.raises(UserError, match=r"damaged.sf2: FluidSynth cannot load"):
        render.render_wav(comp, out, damaged)
    assert not out.exists()
    assert sorted(os.listdir(tmp_path)) == ["damaged.sf2", "junk.sf2"]


def test_failed_render_leaves_old_file(
    tmp_path: Path, soundfont: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "song.wav"
    out.write_bytes(b"old")
    comp = Composition([Track("melody", 0, [Note(60, 0, 16)])], 64, 120.0)
    calls = 0

    def failing_play(synth, sfid, *event):
        nonlocal calls
        calls += 1
        if calls == 3:  # after the first note has been rendered for a while
            raise RuntimeError("synth crashed")

    monkeypatch.setattr(render, "_play", failing_play)
    with pytest.raises(RuntimeError, match="synth crashed"):
        render.render_wav(comp, out, soundfont)
    assert out.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["song.wav"]
