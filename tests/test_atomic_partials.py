"""A write cut short leaves a hidden .part file; the daemon removes those at start."""

from __future__ import annotations

from pathlib import Path

from deepkeys.device.atomic import atomic_write_bytes, remove_partials


def test_remove_partials_deletes_only_cut_short_writes(tmp_path: Path) -> None:
    atomic_write_bytes(tmp_path / "song.mid", b"MThd whole")
    cut = tmp_path / ".other.mid.k2j3.part"
    cut.write_bytes(b"MThd ha")
    assert remove_partials(tmp_path) == [cut]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["song.mid"]
    assert remove_partials(tmp_path / "missing") == []
