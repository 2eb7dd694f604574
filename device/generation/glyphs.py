"""A 3x5 pixel font, enough to print chord names and track names into the piano roll.

The small letters of chord names (m, maj, dim, sus) have small glyphs, so "Bm" cannot
read as "BM"; other small letters are drawn as capitals; anything else is a blank.

>>> text_width("Am7", scale=2)
22
>>> mask = text_mask("C", scale=1); mask.shape, int(mask.sum())
((5, 3), 7)
"""

from __future__ import annotations

import numpy as np

# Each glyph: five rows of three pixels, "#" set.
_FONT = {
    "A": (".#.", "#.#", "###", "#.#", "#.#"), "B": ("##.", "#.#", "##.", "#.#", "##."),
    "C": (".##", "#..", "#..", "#..", ".##"), "D": ("##.", "#.#", "#.#", "#.#", "##."),
    "E": ("###", "#..", "##.", "#..", "###"), "F": ("###", "#..", "##.", "#..", "#.."),
    "G": (".##", "#..", "#.#", "#.#", ".##"), "H": ("#.#", "#.#", "###", "#.#", "#.#"),
    "I": ("###", ".#.", ".#.", ".#.", "###"), "J": ("..#", "..#", "..#", "#.#", ".#."),
    "K": ("#.#", "#.#", "##.", "#.#", "#.#"), "L": ("#..", "#..", "#..", "#..", "###"),
    "M": ("#.#", "###", "###", "#.#", "#.#"), "N": ("##.", "#.#", "#.#", "#.#", "#.#"),
    "O": (".#.", "#.#", "#.#", "#.#", ".#."), "P": ("##.", "#.#", "##.", "#..", "#.."),
    "Q": (".#.", "#.#", "#.#", "##.", ".##"), "R": ("##.", "#.#", "##.", "#.#", "#.#"),
    "S": (".##", "#..", ".#.", "..#", "##."), "T": ("###", ".#.", ".#.", ".#.", ".#."),
    "U": ("#.#", "#.#", "#.#", "#.#", "###"), "V": ("#.#", "#.#", "#.#", "#.#", ".#."),
    "W": ("#.#", "#.#", "###", "###", "#.#"), "X": ("#.#", "#.#", ".#.", "#.#", "#.#"),
    "Y": ("#.#", "#.#", ".#.", ".#.", ".#."), "Z": ("###", "..#", ".#.", "#..", "###"),
    "0": ("###", "#.#", "#.#", "#.#", "###"), "1": (".#.", "##.", ".#.", ".#.", "###"),
    "2": ("##.", "..#", ".#.", "#..", "###"), "3": ("##.", "..#", ".#.", "..#", "##."),
    "4": ("#.#", "#.#", "###", "..#", "..#"), "5": ("###", "#..", "##.", "..#", "##."),
    "6": (".##", "#..", "###", "#.#", "###"), "7": ("###", "..#", ".#.", ".#.", ".#."),
    "8": ("###", "#.#", "###", "#.#", "###"), "9": ("###", "#.#", "###", "..#", "##."),
    "#": ("#.#", "###", "#.#", "###", "#.#"), "/": ("..#", "..#", ".#.", "#..", "#.."),
    "-": ("...", "...", "###", "...", "..."), ".": ("...", "...", "...", "...", ".#."),
    " ": ("...", "...", "...", "...", "..."),
}  # fmt: skip
# Flats are written "b" in chord names; a small b keeps "Bb" readable. The other small
# letters chord names use sit on the bottom three rows (x-height), capitals use all five.
_FONT["b"] = ("#..", "#..", "##.", "#.#", "##.")
_FONT.update({
    "m": ("...", "...", "##.", "###", "#.#"), "a": ("...", "...", ".##", "#.#", ".##"),
    "j": ("..#", "...", "..#", "..#", "##."), "d": ("..#", "..#", ".##", "#.#", ".##"),
    "i": (".#.", "...", ".#.", ".#.", ".#."), "s": ("...", "...", ".##", ".#.", "##."),
    "u": ("...", "...", "#.#", "#.#", ".##"),
})  # fmt: skip
GLYPH_WIDTH, GLYPH_HEIGHT = 3, 5


def _glyph(char: str) -> np.ndarray:
    rows = _FONT.get(char) or _FONT.get(char.upper()) or _FONT[" "]
    return np.array([[c == "#" for c in row] for row in rows])


def text_width(text: str, scale: int = 1) -> int:
    """Pixels ``text`` takes: a glyph and a one-pixel space per character."""
    return max(len(text) * (GLYPH_WIDTH + 1) - 1, 0) * scale


def text_mask(text: str, scale: int = 1) -> np.ndarray:
    """A (5 * scale, width) boolean mask of the text's pixels."""
    if not text:
        return np.zeros((GLYPH_HEIGHT * scale, 0), bool)
    columns = []
    for i, char in enumerate(text):
        if i:
            columns.append(np.zeros((GLYPH_HEIGHT, 1), bool))
        columns.append(_glyph(char))
    mask = np.concatenate(columns, axis=1)
    return np.kron(mask, np.ones((scale, scale), bool)).astype(bool)


def stamp(image: np.ndarray, text: str, x: int, y: int, colour, scale: int = 1) -> None:
    """Draw ``text`` with its top-left corner at (x, y), clipped to the image."""
    mask = text_mask(text, scale)
    h, w = mask.shape
    height, width = image.shape[:2]
    h, w = min(h, height - y), min(w, width - x)
    if h <= 0 or w <= 0 or x < 0 or y < 0:
        return
    region = image[y : y + h, x : x + w]
    region[mask[:h, :w]] = colour
