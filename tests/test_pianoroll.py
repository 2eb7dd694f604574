"""The piano-roll PNG: a valid file, the expected size, and notes in their track's colour."""

from __future__ import annotations

import os
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest

from deepkeys.device.chords import parse_progression
from deepkeys.device.encoding import Composition, Note, Track
from deepkeys.device.generation import pianoroll
from deepkeys.device.generation.glyphs import text_mask
from deepkeys.device.generation.pianoroll import BACKGROUND, PITCH_MARGIN, track_colour, write_png


def decode_png(data: bytes) -> np.ndarray:
    """A strict little decoder for what we write: 8-bit RGB, filter 0, checked CRCs."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, chunks = 8, []
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind, body = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + length]
        (crc,) = struct.unpack(">I", data[pos + 8 + length : pos + 12 + length])
        assert crc == zlib.crc32(kind + body), kind
        chunks.append((kind, body))
        pos += 12 + length
    assert chunks[0][0] == b"IHDR" and chunks[-1] == (b"IEND", b"")
    width, height, depth, colour_type, compression, filtering, interlace = struct.unpack(
        ">IIBBBBB", chunks[0][1]
    )
    assert (depth, colour_type, compression, filtering, interlace) == (8, 2, 0, 0, 0)
    raw = zlib.decompress(b"".join(body for kind, body in chunks if kind == b"IDAT"))
    rows = np.frombuffer(raw, dtype=np.uint8).reshape(height, 1 + 3 * width)
    assert not rows[:, 0].any()  # filter type 0 on every row
    return rows[:, 1:].reshape(height, width, 3)


def composition() -> Composition:
    melody = [Note(72, 0, 4), Note(72, 4, 8), Note(76, 8, 16)]  # a re-attack, then a long note
    bass = [Note(48, 0, 16), Note(43, 16, 32)]
    drums = [Note(36, 0, 1), Note(42, 2, 3), Note(38, 4, 5)]
    return Composition(
        [
            Track("melody", 0, melody),
            Track("bass", 33, bass, channel=1),
            Track("drums", 0, drums, is_drum=True, channel=9),
        ],
        n_steps=32,
        tempo_bpm=100.0,
    )


def test_png_has_notes_in_track_colours(tmp_path: Path) -> None:
    comp = composition()
    path = tmp_path / "roll.png"
    layout = write_png(comp, path, scale=8, px_per_pitch=5)
    data = path.read_bytes()
    image = decode_png(data)

    n_rows = (76 + PITCH_MARGIN) - (43 - PITCH_MARGIN) + 1
    legend = pianoroll.STRIP  # the track names under the roll
    assert struct.unpack(">II", data[16:24]) == (32 * 8, n_rows * 5 + 2 + 3 * 5 + legend)
    assert image.shape == (layout.height, layout.width, 3)
    assert (layout.lo_pitch, layout.hi_pitch) == (43 - PITCH_MARGIN, 76 + PITCH_MARGIN)
    assert layout.drum_pitches == (42, 38, 36)

    def pixel(y: int, x: int) -> tuple[int, ...]:
        return tuple(int(v) for v in image[y, x])

    # Inside each note: the track's colour.
    assert pixel(layout.pitched_y(72) + 2, layout.x(2) + 3) == track_colour(0)
    assert pixel(layout.pitched_y(76) + 2, layout.x(12)) == track_colour(0)
    assert pixel(layout.pitched_y(43) + 2, layout.x(20) + 3) == track_colour(1)
    assert pixel(layout.drum_y(38) + 2, layout.x(4) + 4) == track_colour(2)
    assert track_colour(0) != track_colour(1) != track_colour(2)

    # The re-attack shows: a gap at the end of the first note, a darker first column of the second.
    y = layout.pitched_y(72) + 2
    assert pixel(y, layout.x(4) - 1) != track_colour(0)
    onset = pixel(y, layout.x(4))
    assert onset != track_colour(0) and sum(onset) < sum(track_colour(0))

    # Where nothing plays, the background (or a grid line) shows.
    empty = pixel(layout.pitched_y(60) + 2, layout.x(20) + 3)
    assert empty not in {track_colour(i) for i in range(3)}
    assert pixel(layout.pitched_y(62) + 2, layout.x(20) + 3) == BACKGROUND  # a white key


def test_melody_is_drawn_over_accompaniment(tmp_path: Path) -> None:
    comp = Composition(
        [Track("melody", 0, [Note(60, 0, 16)]), Track("chords", 0, [Note(60, 0, 16)], channel=1)],
        16,
        120.0,
    )
    write_png(comp, tmp_path / "roll.png", scale=10, px_per_pitch=6)
    image = decode_png((tmp_path / "roll.png").read_bytes())
    layout = pianoroll.draw(comp, 10, 6)[1]
    assert tuple(int(v) for v in image[layout.pitched_y(60) + 2, 50]) == track_colour(0)


@pytest.mark.parametrize("bars", [1, 4, 8, 16, 32])
def test_default_width_is_screen_friendly(tmp_path: Path, bars: int) -> None:
    comp = Composition(
        [Track("melody", 0, [Note(60 + b % 12, b * 16, b * 16 + 8) for b in range(bars)])],
        bars * 16,
        120.0,
    )
    layout = write_png(comp, tmp_path / "roll.png")
    assert 1000 <= layout.width <= 1600
    assert 100 <= layout.height <= 600
    assert decode_png((tmp_path / "roll.png").read_bytes()).shape == (
        layout.height,
        layout.width,
        3,
    )


def test_empty_composition_draws(tmp_path: Path) -> None:
    comp = Composition([Track("melody", 0)], 16, 120.0)
    write_png(comp, tmp_path / "empty.png")
    image = decode_png((tmp_path / "empty.png").read_bytes())
    assert image.shape[1] == 1280


def test_failed_png_write_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(image: np.ndarray) -> bytes:
        raise MemoryError("out of memory")

    monkeypatch.setattr(pianoroll, "encode_png", broken)
    (tmp_path / "roll.png").write_bytes(b"old")
    with pytest.raises(MemoryError):
        write_png(composition(), tmp_path / "roll.png")
    assert (tmp_path / "roll.png").read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["roll.png"]


def test_the_chords_are_named_above_the_bars_and_the_tracks_below(tmp_path: Path) -> None:
    comp = composition()
    comp.chords = parse_progression("C | G7")
    image, layout = pianoroll.draw(comp, scale=8, px_per_pitch=5)
    assert layout.top == pianoroll.STRIP
    ink = np.all(image == pianoroll.TEXT, axis=-1)
    for name, step in (("C", 0), ("G7", 16)):
        mask = text_mask(name, pianoroll.TEXT_SCALE)
        x = layout.x(step) + 1
        drawn = ink[2 : 2 + mask.shape[0], x : x + mask.shape[1]]
        assert np.array_equal(drawn, mask), name
    # "C" is written once, though it spans two half bars.
    assert not ink[: layout.top, layout.x(8) : layout.x(16)].any()
    legend = ink[layout.roll_bottom :]
    assert legend.sum() >= sum(text_mask(t.name, 2).sum() for t in comp.tracks)
    # the melody's first note is where the layout says, below the strip
    y = layout.pitched_y(72)
    assert y >= layout.top and tuple(image[y, layout.x(1)]) == track_colour(0)


def test_minor_chord_names_do_not_read_as_major() -> None:
    """A chord name's small letters have their own glyphs: "Bm" is not drawn as "BM"."""
    for small, capital in [("Bm", "BM"), ("Cmaj7", "CMAJ7"), ("Bdim", "BDIM"), ("Dsus4", "DSUS4")]:
        assert text_mask(small).shape == text_mask(capital).shape
        assert not (text_mask(small) == text_mask(capital)).all(), small
