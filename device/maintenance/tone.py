"""``deepkeys tone``: a test chord through the real audio path (FluidSynth -> our audio
thread -> the configured ALSA device), so a maintainer hears that sound works.

    >>> stats = play_tone(load_config(), seconds=1.0)        # doctest: +SKIP
    >>> stats.periods_written, stats.underruns               # doctest: +SKIP
    (375, 0)
"""

from __future__ import annotations

from deepkeys.device.adapters.audio import AudioOutput, AudioStats
from deepkeys.device.config import Config

CHORD = (60, 64, 67, 72)  # C major, middle C up: easy to recognise by ear
VELOCITY = 100
RELEASE_S = 0.5


def paced(device: str) -> bool:
    """ALSA devices that never block (null, the file plugin) are paced like a sound card,
    as the daemon paces them; otherwise the chord would be over in a blink."""
    return device == "null" or device.startswith("file:") or "null" in device.split(",")[-1]


def play_tone(cfg: Config, device: str | None = None, seconds: float = 1.5,
              chord: tuple[int, ...] = CHORD) -> AudioStats:
    """Hold ``chord`` for ``seconds`` on the configured (or given) device, then release it."""
    from deepkeys.device.adapters.synth import Synth

    a = cfg.audio
    device = device or a.device
    synth = Synth(None if a.soundfont == "auto" else a.soundfont, rate=a.rate,
                  gain=cfg.synth.gain, live_program=cfg.synth.live_program)
    try:
        out = AudioOutput(synth, device=device, periodsize=a.period, periods=a.periods,
                          pace=paced(device))
        out.start()  # a device that will not open is a UserError here
        try:
            for note in chord:
                synth.noteon(note, VELOCITY)
            held = round(seconds * a.rate / out.period)
            out.wait_periods(held, timeout=seconds + 10)
            for note in chord:
                synth.noteoff(note)
            out.wait_periods(held + round(RELEASE_S * a.rate / out.period),
                             timeout=RELEASE_S + 10)
        finally:
            out.stop()  # a file: PCM is complete once closed
        return out.stats()
    finally:
        synth.close()
