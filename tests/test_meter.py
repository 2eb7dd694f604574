"""Meters: steps per bar and beats on the 16th grid; bad names and foreign card grids refused."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from deepkeys.device.errors import UserError
from deepkeys.device.generation.card import load_card
from deepkeys.device.meter import Meter

REPO = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize(
    ("name", "steps", "beats"),
    [("2/4", 8, 2), ("3/4", 12, 3), ("4/4", 16, 4), ("6/8", 12, 2), ("12/8", 24, 4)],
)
def test_a_meter_knows_its_bar_and_beats(name: str, steps: int, beats: int) -> None:
    meter = Meter.parse(name)
    assert (meter.steps_per_bar, meter.beats_per_bar, meter.name) == (steps, beats, name)
    assert len(meter.beat_steps) == beats and meter.beat_steps[0] == 0


@pytest.mark.parametrize("bad", ["", "3", "3/5", "0/4", "four/4", "3/4/4"])
def test_a_bad_meter_name_is_one_line(bad: str) -> None:
    with pytest.raises(UserError, match="not a meter") as exc:
        Meter.parse(bad)
    assert "\n" not in str(exc.value)


def test_a_card_of_another_meter_is_refused_by_name(tmp_path: Path) -> None:
    card = REPO / "models" / "rock.json"
    raw = json.loads(card.read_text())
    raw["grid"] = {"beats_per_bar": 3, "beat_unit": 4, "steps_per_bar": 12}
    copy = tmp_path / card.name
    copy.write_text(json.dumps(raw))
    with pytest.raises(UserError, match="3/4 in 12 steps"):
        load_card(copy, verify_model=False)
