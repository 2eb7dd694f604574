"""``deepkeys doctor``: is this appliance healthy? One row per check, a reason per failure.

Each check returns a :class:`Check` (name, ok, reason), where ``ok`` is True, False,
or None for "n/a" (the machine does not expose it: CPU temperature off a Pi). The
command prints the table and exits 1 if any check failed.

When the daemon answers on its socket it holds the sound card, the MIDI ports and
the GPIO pins, so those rows report what the daemon has open; otherwise doctor
opens them itself, briefly, as the daemon would.

    >>> rows = run_checks("/nonexistent/config.toml")      # doctest: +SKIP
    >>> print(format_table(rows))                          # doctest: +SKIP
    check            result  reason
    config           ok      /nonexistent/config.toml (no such file: all defaults)
    daemon           FAIL    deepkeys daemon is not running (no socket at /run/deepkeys/...)
    ...
"""

from __future__ import annotations

import os
import queue
import re
import shutil
import subprocess
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from deepkeys.device.config import Config, config_path, load_config
from deepkeys.device.errors import UserError

MIN_FREE_MB = 200  # a day of compositions is a few MB; a deploy needs a few models' worth
HOT_C = 80.0  # the Pi starts throttling at 80 °C
# vcgencmd get_throttled: bits 0-3 are happening now, 16-19 happened since boot.
THROTTLE_NOW = {
    0x1: "under-voltage",
    0x2: "ARM frequency capped",
    0x4: "throttled",
    0x8: "soft temperature limit",
}


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool | None  # None: not applicable on this machine
    reason: str = ""

    @property
    def result(self) -> str:
        return {True: "ok", False: "FAIL", None: "n/a"}[self.ok]


def run_checks(
    config: str | os.PathLike[str] | None = None, *, sys_root: str = "/", vcgencmd: str = "vcgencmd"
) -> list[Check]:
    """Every check, in the order the table shows them."""
    rows: list[Check] = []
    file = config_path(config)
    try:
        cfg = load_config(file)
        rows.append(
            Check(
                "config",
                True,
                str(file) + ("" if file.exists() else " (no such file: all defaults)"),
            )
        )
    except UserError as exc:
        cfg = Config()
        rows.append(Check("config", False, f"{exc} (the other checks use the defaults)"))

    answer = _daemon_status(cfg)
    status = answer if isinstance(answer, dict) else None
    if status is not None:
        rows.append(
            Check(
                "daemon",
                True,
                f"answering on {cfg.paths.socket}: "
                f"state={status.get('state')} "
                f"genre={status.get('genre') or '-'}",
            )
        )
    else:
        rows.append(Check("daemon", False, str(answer)))
    rows.append(_guard("audio", lambda: check_audio(cfg, status)))
    rows.append(_guard("soundfont", lambda: check_soundfont(cfg)))
    rows.extend(check_models(cfg))
    rows.append(_guard("midi", lambda: check_midi(cfg, status)))
    rows.append(_guard("pins", lambda: check_pins(cfg, status)))
    rows.append(_guard("disk", lambda: check_disk(cfg)))
    rows.append(_guard("cpu temperature", lambda: check_temperature(Path(sys_root))))
    rows.append(_guard("throttling", lambda: check_throttling(vcgencmd)))
    return rows


def _guard(name: str, check: Callable[[], Check]) -> Check:
    """A check that raises is a failed row with its one-line reason, never a traceback."""
    try:
        return check()
    except UserError as exc:
        return Check(name, False, str(exc))
    except Exception as exc:
        return Check(name, False, f"{type(exc).__name__}: {' '.join(str(exc).split())}")


def _daemon_status(cfg: Config) -> dict[str, Any] | str:
    from deepkeys.device.adapters.control import ControlClient

    try:
        reply = ControlClient(cfg.paths.socket, timeout=3.0).request("status")
    except UserError as exc:
        return str(exc)
    return reply if reply.get("ok") else f"the daemon answered with an error: {reply.get('error')}"


# ---------------------------------------------------------------------- the checks
def check_audio(cfg: Config, status: dict[str, Any] | None) -> Check:
    """The ALSA device opens at the configured rate and period."""
    a = cfg.audio
    want = f"{a.rate} Hz, period {a.period}"
    if status and "audio" in status:
        got = status["audio"]
        if (got.get("rate"), got.get("period")) != (a.rate, a.period):
            return Check(
                "audio",
                False,
                f"the daemon has {got.get('device')} at "
                f"{got.get('rate')} Hz, period {got.get('period')}; "
                f"the config says {want}",
            )
        return Check(
            "audio",
            True,
            f"{got.get('device')} held by the daemon: {want}, underruns {got.get('underruns')}",
        )
    from deepkeys.device.adapters.audio import open_pcm

    pcm = open_pcm(a.device, a.rate, a.period, a.periods)  # a UserError is the row's reason
    try:
        info = pcm.info()
    finally:
        pcm.close()
    if (info["rate"], info["period_size"]) != (a.rate, a.period):
        return Check(
            "audio",
            False,
            f"{a.device} gives {info['rate']} Hz, period "
            f"{info['period_size']}; the config says {want}",
        )
    return Check("audio", True, f"{a.device}: {want}")


def check_soundfont(cfg: Config) -> Check:
    from deepkeys.device.soundfont import resolve_soundfont

    font = resolve_soundfont(cfg.audio.soundfont)
    return Check("soundfont", True, f"{font} ({font.stat().st_size / 1e6:.1f} MB)")


def check_models(cfg: Config) -> list[Check]:
    """One row per installed genre: its sha256 and its tensors against its card."""
    from deepkeys.device.generation.card import load_card
    from deepkeys.device.generation.generator import Generator
    from deepkeys.device.generation.library import genres_in

    genres = genres_in(cfg.paths.models)
    if not genres:
        folders = ", ".join(map(str, cfg.paths.models))
        return [Check("models", False, f"no genre models installed (looked in {folders})")]
    rows = []
    for genre, card_file in genres.items():

        def one(card_file: Path = card_file, genre: str = genre) -> Check:
            card = load_card(card_file)
            Generator(card)
            return Check(
                f"model {genre}",
                True,
                f"sha256 {card.sha256[:12]}…, tensors match its card ({card_file})",
            )

        rows.append(_guard(f"model {genre}", one))
    return rows


def check_midi(cfg: Config, status: dict[str, Any] | None) -> Check:
    """The MIDI API is up and at least one keyboard port is found."""
    m = cfg.midi
    if status and "midi" in status:
        ports = list(status["midi"].get("ports") or [])
        where = "the daemon has"
    else:
        from deepkeys.device.adapters.midi import MidiInput

        with MidiInput(queue.Queue(), backend=m.api, ports=m.input_ports, watch=False) as midi:
            ports = midi.ports
        where = "found"
    if not ports:
        wanted = f" matching {', '.join(m.input_ports)}" if m.input_ports else ""
        return Check(
            "midi",
            False,
            f"{m.api} MIDI is up but no keyboard port{wanted} is "
            "connected (plug one in, or set midi.input_ports)",
        )
    return Check("midi", True, f"{m.api}: {where} {', '.join(ports)}")


def check_pins(cfg: Config, status: dict[str, Any] | None) -> Check:
    """The pin factory loads and every configured pin can be claimed."""
    p = cfg.panel
    if status and "leds" in status:
        return Check(
            "pins",
            True,
            f"held by the daemon (factory {p.pin_factory}, LEDs {', '.join(status['leds'])})",
        )
    from deepkeys.device.adapters.panel import Panel

    with warnings.catch_warnings():  # gpiozero's fallback chatter: the row says it all
        warnings.simplefilter("ignore")
        with Panel.from_config(cfg, queue.Queue(), thread=False) as panel:
            factory = type(panel.pin_factory).__name__ if panel.pin_factory else "default"
            buttons, leds = len(panel.pressed), len(panel.leds)
    return Check("pins", True, f"factory {factory}: {buttons} buttons, {leds} LEDs claimed")


def check_disk(cfg: Config, min_free_mb: int = MIN_FREE_MB) -> Check:
    """Free space where the state directory is (or would be created)."""
    where = Path(cfg.paths.state_dir)
    while not where.exists() and where != where.parent:
        where = where.parent
    free_mb = shutil.disk_usage(where).free / 1e6
    text = f"{free_mb:,.0f} MB free for {cfg.paths.state_dir}"
    if free_mb < min_free_mb:
        return Check("disk", False, f"{text}, need {min_free_mb} MB")
    return Check("disk", True, text)


def check_temperature(sys_root: Path, hot_c: float = HOT_C) -> Check:
    """The CPU's thermal zone, where the kernel exposes one."""
    zones = sorted((sys_root / "sys/class/thermal").glob("thermal_zone*"))
    for zone in zones:
        kind = (zone / "type").read_text().strip() if (zone / "type").exists() else ""
        if "cpu" in kind.lower() or zone.name == "thermal_zone0":
            celsius = int((zone / "temp").read_text().strip()) / 1000
            text = f"{celsius:.1f} °C ({kind or zone.name})"
            if celsius >= hot_c:
                return Check("cpu temperature", False, f"{text}, at or above {hot_c:g} °C")
            return Check("cpu temperature", True, text)
    return Check("cpu temperature", None, "no CPU thermal zone on this machine")


def check_throttling(vcgencmd: str = "vcgencmd") -> Check:
    """The Pi firmware's throttling flags (``vcgencmd get_throttled``)."""
    if shutil.which(vcgencmd) is None:
        return Check("throttling", None, "no vcgencmd here (not a Raspberry Pi)")
    out = subprocess.run(
        [vcgencmd, "get_throttled"], capture_output=True, text=True, timeout=10, check=False
    )
    match = re.search(r"throttled=(0x[0-9a-fA-F]+)", out.stdout)
    if out.returncode != 0 or not match:
        why = (out.stderr or out.stdout).strip().splitlines()[-1:] or ["no output"]
        return Check("throttling", False, f"vcgencmd get_throttled failed: {why[0]}")
    flags = int(match.group(1), 16)
    now = [what for bit, what in THROTTLE_NOW.items() if flags & bit]
    before = [what for bit, what in THROTTLE_NOW.items() if flags & (bit << 16)]
    if now:
        return Check("throttling", False, f"{match.group(1)}: {', '.join(now)} now")
    if before:
        return Check(
            "throttling", True, f"{match.group(1)}: none now; since boot: {', '.join(before)}"
        )
    return Check("throttling", True, f"{match.group(1)}: never throttled since boot")


# ---------------------------------------------------------------------- the table
def format_table(rows: list[Check]) -> str:
    """The rows as an aligned table, then a one-line summary.

    >>> print(format_table([Check("config", True, "/etc/x"), Check("disk", False, "full")]))
    check   result  reason
    config  ok      /etc/x
    disk    FAIL    full
    doctor: 1 ok, 1 failed, 0 n/a
    """
    width = max(len("check"), *(len(r.name) for r in rows))
    lines = [f"{'check':<{width}}  result  reason"]
    lines += [f"{r.name:<{width}}  {r.result:<6}  {r.reason}".rstrip() for r in rows]
    ok = sum(r.ok is True for r in rows)
    failed = sum(r.ok is False for r in rows)
    lines.append(f"doctor: {ok} ok, {failed} failed, {len(rows) - ok - failed} n/a")
    return "\n".join(lines)
