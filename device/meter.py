"""Meters: how many steps of the 16th-note grid make a bar, and where its beats fall.

A meter is a time signature read as the player counts it. Simple meters (2/4, 3/4,
4/4) count quarter notes; compound meters (6/8, 9/8, 12/8) count dotted quarters,
three eighths each, so a 6/8 bar has two beats, not six. Every grid here is 16th
notes (:data:`~deepkeys.device.encoding.STEPS_PER_BEAT` steps per quarter), so an
eighth is two steps. Imports nothing but :mod:`deepkeys.device.errors`.

>>> waltz = Meter.parse("3/4")
>>> waltz.steps_per_bar, waltz.beats_per_bar, waltz.beat_steps
(12, 3, (0, 4, 8))
>>> Meter.parse("6/8").beat_steps
(0, 6)
>>> Meter.parse("12/8").steps_per_bar
24
>>> [Meter.parse("3/4").click(i) for i in range(4)]
['accent', 'beat', 'beat', 'accent']
>>> Meter.parse("5/3")
Traceback (most recent call last):
...
deepkeys.device.errors.UserError: not a meter: '5/3' (try 4/4, 3/4, 2/4, 6/8, 12/8)
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from deepkeys.device.errors import UserError

STEPS_PER_QUARTER = 4  # the 16th-note grid every model and file uses
SUGGESTED = ("4/4", "3/4", "2/4", "6/8", "12/8")
_NAME = re.compile(r"\s*(\d{1,2})\s*/\s*(\d{1,2})\s*")


@dataclass(frozen=True)
class Meter:
    """A time signature: ``numerator`` notes of 1/``denominator`` to the bar."""

    numerator: int
    denominator: int

    def __post_init__(self) -> None:
        if self.denominator not in (2, 4, 8, 16) or not 1 <= self.numerator <= 32:
            raise UserError(f"not a meter: '{self.name}' (try {', '.join(SUGGESTED)})")

    @classmethod
    def parse(cls, name: str) -> Meter:
        """``"3/4"`` -> ``Meter(3, 4)``; anything else is a one-line :class:`UserError`."""
        match = _NAME.fullmatch(name) if isinstance(name, str) else None
        if match is None:
            raise UserError(f"not a meter: {name!r} (try {', '.join(SUGGESTED)})")
        return cls(int(match[1]), int(match[2]))

    @property
    def name(self) -> str:
        return f"{self.numerator}/{self.denominator}"

    @property
    def compound(self) -> bool:
        """6/8, 9/8, 12/8: beats of three eighths (3/8 itself is one beat of three)."""
        return self.denominator == 8 and self.numerator % 3 == 0

    @property
    def note_steps(self) -> int:
        """Steps in one 1/denominator note (a 1/16 is one step)."""
        return STEPS_PER_QUARTER * 4 // self.denominator

    @property
    def steps_per_bar(self) -> int:
        return self.numerator * self.note_steps

    @property
    def beats_per_bar(self) -> int:
        """Beats as a player counts them: a 6/8 bar has two."""
        return self.numerator // 3 if self.compound else self.numerator

    @property
    def steps_per_beat(self) -> int:
        return self.steps_per_bar // self.beats_per_bar

    @property
    def beat_steps(self) -> tuple[int, ...]:
        """The step of each beat within the bar."""
        return tuple(range(0, self.steps_per_bar, self.steps_per_beat))

    def click(self, beat: int) -> str:
        """The count-in click of the ``beat``-th beat from a bar line: accent on each downbeat."""
        return "accent" if beat % self.beats_per_bar == 0 else "beat"


COMMON = Meter(4, 4)
