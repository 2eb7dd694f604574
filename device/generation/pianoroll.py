"""A piano-roll picture of a composition, as a PNG, with nothing but numpy and zlib.

Time runs left to right (faint bar lines, fainter beat lines), pitch bottom to top,
cropped to the pitches in use. Each track has its own colour; the melody is drawn
last and brightest. Every note starts with a darker column and ends one pixel
short, so repeated notes of the same pitch show as separate notes. Drum tracks get
a lane of their own under the pitched parts, one row per drum sound. A strip above
the roll names the chord of each half bar where it changes (the chords every part
plays), and a legend under it names each track in its colour.

>>> layout = write_png(comp, "song.png")        # doctest: +SKIP
>>> layout.width, layout.height                 # doctest: +SKIP
(1280, 392)
"""

from __future__ import annotations

import os
import struct
import zlib
from dataclasses import dataclass

import numpy as np

from deepkeys.device.atomic import atomic_write_bytes
from deepkeys.device.encoding import STEPS_PER_BAR, STEPS_PER_BEAT, Composition, Note
from deepkeys.device.generation.glyphs import GLYPH_HEIGHT, stamp, text_width

# Colour-blind-friendly (Okabe-Ito) colours: the melody's vermilion first, then
# blue, bluish green, reddish purple, orange, sky blue, yellow, black.
PALETTE = (
    (213, 94, 0),
    (0, 114, 178),
    (0, 158, 115),
    (204, 121, 167),
    (230, 159, 0),
    (86, 180, 233),
    (190, 170, 40),
    (60, 60, 60),
)
BACKGROUND = (250, 250, 248)
BLACK_KEY_ROW = (238, 238, 236)  # rows of black keys are shaded, as on a keyboard
OCTAVE_LINE = (215, 215, 212)  # under each C
BAR_LINE = (175, 175, 175)
BEAT_LINE = (222, 222, 220)
LANE_GAP = (120, 120, 120)  # the line between the pitched parts and the drums
PITCH_MARGIN = 2  # empty rows above the highest and below the lowest pitch
MIN_PITCH_ROWS = 24
TARGET_WIDTH = 1280
TARGET_HEIGHT = 400
BLACK_KEYS = {1, 3, 6, 8, 10}
TEXT = (40, 40, 40)
TEXT_SCALE = 2
STRIP = GLYPH_HEIGHT * TEXT_SCALE + 4  # the chord strip above and the legend below


@dataclass(frozen=True)
class RollLayout:
    """Where things landed in the picture, so a caller (or a test) can find a note.

    ``lo_pitch``/``hi_pitch`` bound the pitched area; ``drum_pitches`` are the drum
    sounds, one row each, top to bottom, under a 2-pixel separator.
    """

    width: int
    height: int
    px_per_step: int
    px_per_pitch: int
    lo_pitch: int
    hi_pitch: int
    drum_pitches: tuple[int, ...]
    top: int = 0  # rows of the chord strip above the roll

    def pitched_y(self, pitch: int) -> int:
        """The top pixel row of a pitch in the pitched area."""
        return self.top + (self.hi_pitch - pitch) * self.px_per_pitch

    def drum_y(self, pitch: int) -> int:
        """The top pixel row of a drum sound in the drum lane."""
        top = self.top + (self.hi_pitch - self.lo_pitch + 1) * self.px_per_pitch + 2
        return top + self.drum_pitches.index(pitch) * self.px_per_pitch

    @property
    def roll_bottom(self) -> int:
        """The first pixel row under the roll (where the legend starts)."""
        drums = 2 + len(self.drum_pitches) * self.px_per_pitch if self.drum_pitches else 0
        return self.top + (self.hi_pitch - self.lo_pitch + 1) * self.px_per_pitch + drums

    def x(self, step: int) -> int:
        return step * self.px_per_step


def track_colour(index: int) -> tuple[int, int, int]:
    """The colour track ``index`` is drawn in: the melody (0) at full strength, the
    accompaniment a little softer, blended 15% towards the background.

    >>> track_colour(0), track_colour(1)
    ((213, 94, 0), (38, 134, 188))
    """
    base = PALETTE[index % len(PALETTE)]
    if index == 0:
        return base
    return tuple(round(c * 0.85 + b * 0.15) for c, b in zip(base, BACKGROUND))  # type: ignore[return-value]


def write_png(
    comp: Composition,
    path: str | os.PathLike[str],
    scale: int | None = None,
    px_per_pitch: int | None = None,
) -> RollLayout:
    """Draw the composition as a piano roll and write it as a PNG, atomically.

    ``scale`` is pixels per 16th step; by default it is chosen so the picture is
    about 1000-1600 pixels wide. ``px_per_pitch`` is the height of a pitch row; by
    default the picture is about 400 pixels high (rows of 4 to 10 pixels).
    """
    image, layout = draw(comp, scale, px_per_pitch)
    atomic_write_bytes(path, encode_png(image))
    return layout


def draw(
    comp: Composition, scale: int | None = None, px_per_pitch: int | None = None
) -> tuple[np.ndarray, RollLayout]:
    """The piano roll as an (height, width, 3) uint8 RGB array, and its layout."""
    n_steps = max(comp.n_steps, max((n.end for t in comp.tracks for n in t.notes), default=1))
    px_per_step = scale if scale is not None else max(1, round(TARGET_WIDTH / n_steps))
    pitched = [n.pitch for t in comp.tracks if not t.is_drum for n in t.notes]
    drums = tuple(
        sorted({n.pitch for t in comp.tracks if t.is_drum for n in t.notes}, reverse=True)
    )
    # An empty composition still gets the octaves around middle C to look at.
    lo = (min(pitched) if pitched else 60) - PITCH_MARGIN
    hi = (max(pitched) if pitched else 72) + PITCH_MARGIN
    if hi - lo + 1 < MIN_PITCH_ROWS:
        # A narrow tune still gets two octaves, so intervals look like intervals.
        missing = MIN_PITCH_ROWS - (hi - lo + 1)
        lo, hi = lo - missing // 2, hi + missing - missing // 2
    if px_per_pitch is None:
        rows = hi - lo + 1 + len(drums)
        px_per_pitch = min(max(round(TARGET_HEIGHT / rows), 4), 10)
    pitched_height = (hi - lo + 1) * px_per_pitch
    drum_height = 2 + len(drums) * px_per_pitch if drums else 0
    top = STRIP if comp.chords else 0
    layout = RollLayout(
        width=n_steps * px_per_step,
        height=top + pitched_height + drum_height + STRIP,
        px_per_step=px_per_step,
        px_per_pitch=px_per_pitch,
        lo_pitch=lo,
        hi_pitch=hi,
        drum_pitches=drums,
        top=top,
    )

    image = np.empty((layout.height, layout.width, 3), dtype=np.uint8)
    image[:] = BACKGROUND
    for pitch in range(lo, hi + 1):
        y = layout.pitched_y(pitch)
        if pitch % 12 in BLACK_KEYS:
            image[y : y + px_per_pitch] = BLACK_KEY_ROW
        elif pitch % 12 == 0:
            image[y + px_per_pitch - 1] = OCTAVE_LINE
    if drums:
        image[top + pitched_height : top + pitched_height + 2] = LANE_GAP
    roll = slice(top, layout.roll_bottom)
    for step in range(0, n_steps, STEPS_PER_BEAT):
        image[roll, layout.x(step)] = BAR_LINE if step % STEPS_PER_BAR == 0 else BEAT_LINE
    _label_chords(image, layout, comp)
    _legend(image, layout, comp)

    # Accompaniment first, the melody last so it is never hidden.
    for index in reversed(range(len(comp.tracks))):
        track = comp.tracks[index]
        track_rgb = np.array(track_colour(index), dtype=np.float32)
        for note in track.notes:
            y = layout.drum_y(note.pitch) if track.is_drum else layout.pitched_y(note.pitch)
            _draw_note(image, layout, note, y, track_rgb)
    return image, layout


def _label_chords(image: np.ndarray, layout: RollLayout, comp: Composition) -> None:
    """Each chord's name above the half bar where it starts, if it fits before the next."""
    cell = STEPS_PER_BAR // 2
    free_from = 0
    previous = None
    for index, chord in enumerate(comp.chords):
        x = layout.x(index * cell) + 1
        if chord != previous and x >= free_from:
            stamp(image, chord.name, x, 2, TEXT, TEXT_SCALE)
            free_from = x + text_width(chord.name, TEXT_SCALE) + 3
        previous = chord


def _legend(image: np.ndarray, layout: RollLayout, comp: Composition) -> None:
    """A swatch and the name of every track, left to right, under the roll."""
    x, y = 2, layout.roll_bottom + 2
    for index, track in enumerate(comp.tracks):
        swatch = GLYPH_HEIGHT * TEXT_SCALE
        image[y : y + swatch, x : x + swatch] = track_colour(index)
        stamp(image, track.name, x + swatch + 3, y, TEXT, TEXT_SCALE)
        x += swatch + 3 + text_width(track.name, TEXT_SCALE) + 10


def _draw_note(
    image: np.ndarray, layout: RollLayout, note: Note, y: int, colour: np.ndarray
) -> None:
    x0, x1 = layout.x(note.start), layout.x(note.end)
    if x1 - x0 >= 3:
        x1 -= 1  # a 1-pixel gap, so a re-attack looks like two notes
    x1 = max(x1, x0 + 1)
    y0, y1 = y, y + max(layout.px_per_pitch - 1, 1)  # and a 1-pixel gap between rows
    image[y0:y1, x0:x1] = colour.astype(np.uint8)
    image[y0:y1, x0] = (colour * 0.55).astype(np.uint8)  # the onset, darker


def encode_png(image: np.ndarray) -> bytes:
    """Encode an (height, width, 3) uint8 array as an 8-bit RGB PNG (filter 0 on every row).

    >>> encode_png(np.zeros((1, 1, 3), dtype=np.uint8))[:8]
    b'\\x89PNG\\r\\n\\x1a\\n'
    """
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError("expected a (height, width, 3) uint8 array")
    height, width, _ = image.shape
    rows = np.zeros((height, 1 + width * 3), dtype=np.uint8)  # column 0 is the filter byte
    rows[:, 1:] = image.reshape(height, width * 3)
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # 8-bit, truecolour
    return (
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", header)
        + _chunk(b"IDAT", zlib.compress(rows.tobytes(), 6))
        + _chunk(b"IEND", b"")
    )


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
