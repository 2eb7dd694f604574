"""Listening to the recording: onsets, pitches and energy, in plain numpy.

Everything takes a mono float array (``JackRecorder.audio()``) and its sample rate.

>>> rate = 48000
>>> t = np.arange(rate // 2) / rate
>>> note = sum(0.3 / h * np.sin(2 * np.pi * h * midi_hz(57) * t) for h in (1, 2, 3, 4))
>>> tone = np.concatenate([np.zeros(4800), note])
>>> onset_after(tone, 0, rate) - 4800 < 48, round(detect_pitch(note, rate))
(True, 57)
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

FLOOR = 0.002  # about -54 dBFS: quieter than any key, louder than dither


def midi_hz(pitch: float) -> float:
    """The frequency of a MIDI pitch: ``midi_hz(69)`` is 440.0."""
    return 440.0 * 2.0 ** ((pitch - 69) / 12)


def hz_midi(hz: float) -> float:
    return 69 + 12 * np.log2(hz / 440.0)


def onset_after(
    audio: np.ndarray,
    start: int,
    rate: int,
    within_s: float = 0.25,
    floor: float = FLOOR,
    rise: float = 1.8,
) -> int | None:
    """The first sample at or after ``start`` where a new sound begins, or None.

    Works on 1 ms RMS frames: the first frame louder than ``floor`` and ``rise``
    times the loudest frame of the 5 ms before ``start`` (so the tail of an earlier
    note does not count as this one); then the first sample of that frame over the
    same threshold.
    """
    ms = max(1, rate // 1000)
    lead = audio[max(0, start - 5 * ms) : start]
    base = max(
        (float(np.sqrt(np.mean(lead[i : i + ms] ** 2))) for i in range(0, len(lead), ms)),
        default=0.0,
    )
    threshold = max(floor, rise * base)
    window = audio[start : start + int(within_s * rate)]
    n = len(window) // ms
    if n == 0:
        return None
    rms = np.sqrt(np.mean(window[: n * ms].reshape(n, ms) ** 2, axis=1))
    loud = np.flatnonzero(rms > threshold)
    if not len(loud):
        return None
    frame = window[loud[0] * ms : (loud[0] + 1) * ms]
    within = np.flatnonzero(np.abs(frame) > threshold)
    return start + int(loud[0] * ms + (within[0] if len(within) else 0))


def match_delay(
    audio: np.ndarray, start: int, template: np.ndarray, within: int, min_score: float = 0.5
) -> tuple[int, float] | None:
    """Where ``template`` begins in ``audio`` at or after ``start``: (sample, score), or None.

    Normalized cross-correlation over every lag in ``0..within``; the best lag wins if
    its score (1.0: the same waveform, scaled) reaches ``min_score``. Matching the
    whole waveform, not a level threshold, times a note from its first sample however
    slowly its sample rises, and is not fooled by the tail of the note before.

    >>> rng = np.random.default_rng(0)
    >>> tpl = rng.standard_normal(200)
    >>> audio = np.concatenate([np.zeros(1000), tpl, np.zeros(500)])
    >>> audio += 0.1 * rng.standard_normal(len(audio))
    >>> match_delay(audio, 900, tpl, 400)[0]
    1000
    """
    n = len(template)
    window = np.asarray(audio[start : start + within + n], dtype=np.float64)
    if len(window) < n:
        return None
    size = 1 << (len(window) + n - 1).bit_length()  # by FFT: templates may be seconds long
    full = np.fft.irfft(np.fft.rfft(window, size) * np.conj(np.fft.rfft(template, size)), size)
    corr = full[: len(window) - n + 1]
    power = np.concatenate([[0.0], np.cumsum(window**2)])
    energy = power[n:] - power[:-n]
    score = corr / np.sqrt(np.maximum(energy, 1e-12) * float(np.dot(template, template)))
    best = int(np.argmax(score))
    if score[best] < min_score:
        return None
    return start + best, float(score[best])


def _spectrum(segment: np.ndarray, rate: int, pad: int = 8) -> tuple[np.ndarray, np.ndarray]:
    n = len(segment)
    spec = np.abs(np.fft.rfft(segment * np.hanning(n), n * pad))
    return np.fft.rfftfreq(n * pad, 1 / rate), spec


def detect_pitch(
    segment: np.ndarray, rate: int, low: int = 28, high: int = 100, harmonics: int = 4
) -> float:
    """The fundamental of a (mostly) single note, as a fractional MIDI pitch.

    Harmonic product spectrum: the log spectrum summed at 1, 2, ... ``harmonics``
    times each candidate frequency peaks at the fundamental, not at a strong overtone.
    """
    freqs, spec = _spectrum(segment, rate)
    log = np.log(spec + 1e-9)
    step = freqs[1]
    cands = np.arange(midi_hz(low), midi_hz(high), step)
    score = np.zeros(len(cands))
    for h in range(1, harmonics + 1):
        idx = np.minimum(np.round(cands * h / step).astype(int), len(log) - 1)
        score += log[idx]
    return float(hz_midi(cands[int(np.argmax(score))]))


def pitch_energy(segment: np.ndarray, rate: int, low: int = 21, high: int = 108) -> np.ndarray:
    """Energy at each MIDI pitch's fundamental (+-50 cents), pitches ``low..high``."""
    freqs, spec = _spectrum(segment, rate, pad=2)
    power = spec**2
    out = np.zeros(high - low + 1)
    for i, p in enumerate(range(low, high + 1)):
        band = (freqs >= midi_hz(p - 0.5)) & (freqs < midi_hz(p + 0.5))
        out[i] = power[band].sum()
    return out


def band_energy(audio: np.ndarray, rate: int, lo_hz: float, hi_hz: float) -> float:
    """Share of the signal's energy between ``lo_hz`` and ``hi_hz``."""
    freqs, spec = _spectrum(audio, rate, pad=1)
    power = spec**2
    total = power.sum()
    return float(power[(freqs >= lo_hz) & (freqs < hi_hz)].sum() / total) if total else 0.0


def high_flux(
    audio: np.ndarray, rate: int, hop_s: float = 0.005, cutoff_hz: float = 4000.0
) -> np.ndarray:
    """Spectral flux above ``cutoff_hz``, one value per hop: where broadband hits are."""
    hop = int(hop_s * rate)
    n = 4 * hop
    frames = np.lib.stride_tricks.sliding_window_view(audio, n)[::hop] * np.hanning(n)
    spec = np.abs(np.fft.rfft(frames, axis=1))
    spec = spec[:, np.fft.rfftfreq(n, 1 / rate) >= cutoff_hz]
    flux = np.maximum(np.diff(spec, axis=0), 0).sum(axis=1)
    return np.concatenate([[0.0], flux])


@dataclass(frozen=True, slots=True)
class MidiNote:
    """A note of a saved .mid file, in seconds from the file's start."""

    track: str
    channel: int
    pitch: int
    start: float
    end: float


def read_notes(path: str | Path) -> dict[str, list[MidiNote]]:
    """Every note of a MIDI file, per track name, times in seconds (tempo map applied)."""
    import mido

    mid = mido.MidiFile(str(path))
    tempo = 500000
    for msg in mid.tracks[0]:
        if msg.type == "set_tempo":
            tempo = msg.tempo
            break
    out: dict[str, list[MidiNote]] = {}
    for track in mid.tracks[1:]:
        name, tick, sounding, notes = "", 0, {}, []
        for msg in track:
            tick += msg.time
            t = mido.tick2second(tick, mid.ticks_per_beat, tempo)
            if msg.type == "track_name":
                name = msg.name
            elif msg.type == "note_on" and msg.velocity:
                sounding[(msg.channel, msg.note)] = t
            elif msg.type in ("note_on", "note_off") and (msg.channel, msg.note) in sounding:
                start = sounding.pop((msg.channel, msg.note))
                notes.append(MidiNote(name, msg.channel, msg.note, start, t))
        out[name] = sorted(notes, key=lambda n: (n.start, n.pitch))
    return out
