"""Compare the notes ``deepkeys generate`` wrote on arm64 (under emulation) with those
written on x86 for the same melodies, genres and seed.

    python arm64/compare_notes.py ARM64_DIR X86_DIR

Each DIR holds ``<genre>/<melody>-<genre>.mid``. A note is (track, channel, pitch, start
tick, end tick). Identical note lists everywhere: exit 0. Otherwise each differing file's
note F1 (a note matches one on the other side with the same track, channel, pitch and
start) is printed, then the overall F1, and the exit status is 1.
"""

from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path

import mido

Note = tuple[int, int, int, int, int]


def notes(path: Path) -> list[Note]:
    """Every note of every track, in order: (track, channel, pitch, start, end) in ticks."""
    out: list[Note] = []
    for t, track in enumerate(mido.MidiFile(path).tracks):
        now = 0
        sounding: dict[tuple[int, int], list[int]] = {}
        for msg in track:
            now += msg.time
            if msg.type == "note_on" and msg.velocity > 0:
                sounding.setdefault((msg.channel, msg.note), []).append(now)
            elif msg.type in ("note_on", "note_off"):
                starts = sounding.get((msg.channel, msg.note))
                if starts:
                    out.append((t, msg.channel, msg.note, starts.pop(0), now))
    return sorted(out)


def f1(a: list[Note], b: list[Note]) -> tuple[float, int]:
    """Note F1 on (track, channel, pitch, start), and the matched count."""
    ka = Counter(n[:4] for n in a)
    kb = Counter(n[:4] for n in b)
    matched = sum((ka & kb).values())
    total = len(a) + len(b)
    return (1.0 if total == 0 else 2 * matched / total), matched


def main(argv: list[str]) -> int:
    arm, x86 = Path(argv[0]), Path(argv[1])
    files = sorted(p.relative_to(x86) for p in x86.glob("*/*.mid"))
    if not files:
        print(f"compare: no MIDI files under {x86}")
        return 2
    same = missing = 0
    total_matched = total_notes = 0
    for rel in files:
        a_path = arm / rel
        if not a_path.exists():
            print(f"  {rel}: missing on arm64")
            missing += 1
            continue
        a, b = notes(a_path), notes(x86 / rel)
        score, matched = f1(a, b)
        total_matched += matched
        total_notes += len(a) + len(b)
        if a == b:
            same += 1
            byte_same = a_path.read_bytes() == (x86 / rel).read_bytes()
            if not byte_same:
                print(f"  {rel}: same notes, other bytes")
        else:
            print(f"  {rel}: notes differ: arm64 {len(a)}, x86 {len(b)}, note F1 {score:.3f}")
    overall = 1.0 if total_notes == 0 else 2 * total_matched / total_notes
    print(
        f"notes: {same} of {len(files)} files identical between arm64 and x86 "
        f"(seed 0; {total_notes // 2} notes a side on average), note F1 {overall:.4f}"
        + (f", {missing} missing on arm64" if missing else "")
    )
    return 0 if same == len(files) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
