"""The daemon: one main loop that wires the appliance's parts together.

Threads, as DESIGN.md fixes them:

- MIDI, panel and control-socket threads put events on ``Daemon.events``. Keys,
  pedal and bend also go straight to the synth's queue as they are read
  (:meth:`Daemon._sound`), and the audio thread reads the keyboards once more just
  before each render (:meth:`Daemon._take_keys`): sound never waits for the main
  loop, nor for the MIDI reader's next round (``deepkeys bench e2e``, README);
- the main loop (:meth:`Daemon.run`) owns the state machine (``state.Appliance``):
  it takes one event at a time, hands it to the appliance and carries out the
  actions it answers with, in order
  (``do_<action>`` below, one method per name in ``events.ACTIONS``);
- one generation worker runs inference and posts ``GenerationDone`` back;
- one save worker writes takes and compositions (and runs ``publish.command``, or
  queues it under systemd);
- the audio thread (:mod:`~deepkeys.device.adapters.audio`) renders the synth and the sequencer.

The loop also sends ``Tick`` every ``TICK_S``, feeds systemd's watchdog (so a stalled
loop gets the service restarted) and replaces the status snapshot that the control
socket's ``status`` command reads.

    >>> daemon = Daemon(load_config())                  # doctest: +SKIP
    >>> daemon.start(); daemon.run()                    # doctest: +SKIP
"""

from __future__ import annotations

import concurrent.futures
import json
import logging
import queue
import signal
import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from deepkeys.device.adapters import notify
from deepkeys.device.adapters.control import ControlServer, event_dict
from deepkeys.device.appliance import publish
from deepkeys.device.appliance.keypath import KeyPath
from deepkeys.device.atomic import atomic_write_bytes, free_megabytes
from deepkeys.device.chords import progression_text
from deepkeys.device.config import Config, resolve_seed
from deepkeys.device.encoding import STEPS_PER_BAR, STEPS_PER_BEAT, Composition, Track
from deepkeys.device.errors import UserError, one_line
from deepkeys.device.events import (
    BUTTONS,
    Action,
    Button,
    ControlChange,
    GenerationDone,
    Tick,
)
from deepkeys.device.generation.library import genres_in
from deepkeys.device.log import kv

if TYPE_CHECKING:
    from deepkeys.device.adapters.audio import AudioOutput, BlockInfo
    from deepkeys.device.adapters.midi import MidiInput
    from deepkeys.device.adapters.panel import Panel
    from deepkeys.device.adapters.synth import Synth
    from deepkeys.device.appliance.sequencer import Sequencer
    from deepkeys.device.appliance.state import Appliance
    from deepkeys.device.appliance.take import Take
    from deepkeys.device.generation.generator import Generator

log = logging.getLogger("deepkeys.daemon")

TICK_S = 0.010  # the state machine's clock
SNAPSHOT_S = 0.050  # how often the status snapshot is rebuilt
QUEUE_SIZE = 1024
LATENCY_WINDOW = 1024  # key-to-audio samples kept for the status
BIG_ARGS = ("take", "composition")  # not sent to monitors
RELOAD_TIMEOUT_S = 10.0
T = TypeVar("T")


def _started(part: T | None, name: str) -> T:
    """``part``, which :meth:`Daemon.start` brought up; a bug if it is missing."""
    if part is None:
        raise RuntimeError(f"the daemon's {name} is not started")
    return part


class _Reload:
    """Main-loop event: swap in reloaded generators; ``applied`` is set once done."""

    def __init__(self, generators: dict[str, Generator]) -> None:
        self.generators = generators
        self.applied = threading.Event()


class Daemon:
    """The appliance, built from a :class:`Config`: :meth:`start`, :meth:`run`, :meth:`stop`."""

    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg
        self.events: queue.Queue = queue.Queue(maxsize=QUEUE_SIZE)
        self.counts: Counter[str] = Counter()
        self.generators: dict[str, Generator] = {}
        self.keys = KeyPath(
            cfg, self.events, is_transport=self._is_transport, on_block=self._on_block
        )
        self.panel: Panel | None = None
        self.control: ControlServer | None = None
        self.box: Appliance | None = None
        self.snapshot: dict[str, Any] = {"state": "starting"}
        self.started_t = time.monotonic()
        self._stop = threading.Event()
        self._stopped = False
        self._reload_lock = threading.Lock()  # one rescan at a time
        self._latency: deque[float] = deque(maxlen=LATENCY_WINDOW)  # appended by the audio thread
        self._generate_pool = concurrent.futures.ThreadPoolExecutor(1, "deepkeys-generate")
        self._save_pool = concurrent.futures.ThreadPoolExecutor(1, "deepkeys-save")

    @property
    def synth(self) -> Synth | None:
        return self.keys.synth

    @property
    def seq(self) -> Sequencer | None:
        return self.keys.seq

    @property
    def audio(self) -> AudioOutput | None:
        return self.keys.audio

    @property
    def midi(self) -> MidiInput | None:
        return self.keys.midi

    # The parts that start() brought up; actions and the main loop only run after it.
    @property
    def _need_box(self) -> Appliance:
        return _started(self.box, "state machine")

    @property
    def _need_panel(self) -> Panel:
        return _started(self.panel, "panel")

    @property
    def _need_seq(self) -> Sequencer:
        return _started(self.seq, "sequencer")

    @property
    def _need_synth(self) -> Synth:
        return _started(self.synth, "synth")

    # ================================================================ lifetime
    def start(self) -> None:
        """Bring every part up; READY=1 once all are. A part that fails is a UserError,
        and whatever was already up is closed again."""
        self._remove_partials()
        try:
            self._start_models()
            self._start_audio()
            self._start_midi()
            self._start_panel()
            self._start_box()
            self._start_control()
        except BaseException:
            self.stop()
            raise
        self._refresh_snapshot()
        box = self._need_box
        notify.ready(f"state={box.state} genre={box.genre or '-'}")
        log.info(
            kv(
                event="ready",
                genres=",".join(self.generators) or "none",
                genre=box.genre or "none",
                seed=box.next_seed,
            )
        )

    def _remove_partials(self) -> None:
        """A save cut short (power cut, SIGKILL) leaves a hidden .part file, never a half
        .mid; delete those, or every crash would leave one more behind."""
        from deepkeys.device.atomic import remove_partials

        for folder in ("compositions", "takes"):
            for part in remove_partials(self.cfg.paths.state_dir / folder):
                log.warning(kv(event="partial_removed", path=part))

    def _start_models(self) -> None:
        self.generators, _ = self._scan_models({})
        if not self.generators:
            log.warning(kv(event="no_models", folders=",".join(map(str, self.cfg.paths.models))))

    def _scan_models(
        self, current: dict[str, Generator]
    ) -> tuple[dict[str, Generator], dict[str, str]]:
        """Load every genre in the model folders; returns (genre -> generator, errors).

        A genre whose card and model are unchanged keeps its loaded generator. One
        that fails to load keeps the generator it had (a broken deploy never replaces
        a working model), or is left out if it had none.
        """
        from deepkeys.device.generation.card import load_card
        from deepkeys.device.generation.generator import Generator

        loaded: dict[str, Generator] = {}
        errors: dict[str, str] = {}
        for genre, card_file in genres_in(self.cfg.paths.models).items():
            old = current.get(genre)
            try:
                card = load_card(card_file)
                if old is not None and (old.card.path, old.card.sha256) == (card_file, card.sha256):
                    loaded[genre] = old
                    continue
                loaded[genre] = Generator(card)
            except Exception as exc:  # a corrupt model must not keep the keys silent
                errors[genre] = one_line(exc)
                kept = old is not None
                if old is not None:
                    loaded[genre] = old
                log.error(
                    kv(
                        event="model_skipped",
                        genre=genre,
                        card=card_file,
                        error=errors[genre],
                        kept_previous=kept,
                    )
                )
            else:
                log.info(
                    kv(event="model_loaded", genre=genre, card=card_file, sha256=card.sha256[:12])
                )
        return loaded, errors

    def _start_audio(self) -> None:
        self.keys.start_audio()

    def _on_block(self, info: BlockInfo) -> None:
        """Audio thread: note how long each live event waited to be heard. Only appends."""
        if info.live:
            buffered = self.audio.queued_s if self.audio is not None else 0.0
            for event in info.live:
                self._latency.append(info.t_rendered - event[4] + buffered)

    def _start_midi(self) -> None:
        self.keys.start_midi()

    def _start_panel(self) -> None:
        from deepkeys.device.adapters.panel import Panel

        self.panel = Panel.from_config(self.cfg, self.events)

    def _start_box(self) -> None:
        from deepkeys.device.appliance.state import Appliance

        # Seeds continue from the clock, so "generate" after a restart is a new variation;
        # the first seed is logged, and player.first_seed replays a session.
        first_seed = resolve_seed(self.cfg.player.first_seed)
        box = self.box = Appliance.from_config(
            self.cfg, list(self.generators), first_seed=first_seed
        )
        problem = Appliance.default_genre_problem(self.cfg.player.default_genre, box.genres)
        if problem:
            log.warning(kv(event="default_genre_missing", problem=problem, starting_on=box.genre))
        for a in box.start():
            self._do(a)

    def _start_control(self) -> None:
        self.control = ControlServer.from_config(
            self.cfg,
            {
                "status": lambda request: self.snapshot,
                "press": self._press,
                "reload": self._reload,
            },
        )

    def stop(self) -> None:
        """Shut down in order: no new input, silence, audio off, saves finished. Safe twice."""
        if self._stopped:
            return
        self._stopped = True
        self._stop.set()
        notify.stopping()
        log.info(kv(event="stopping"))
        for name, part in (("control", self.control), ("panel", self.panel)):
            if part is not None:
                self._quietly(part.close, name)
        self._quietly(self.keys.close_input, "midi")
        self.keys.silence()
        self._quietly(self.keys.close_output, "audio")
        self._generate_pool.shutdown(wait=False, cancel_futures=True)
        self._save_pool.shutdown(wait=True)  # a composition being written is finished
        log.info(kv(event="stopped", **{k: v for k, v in sorted(self.counts.items())}))

    def request_stop(self) -> None:
        """Ask the loop to end (signal handlers, tests); returns at once."""
        self._stop.set()

    @staticmethod
    def _quietly(func: Callable[[], Any], what: str) -> None:
        try:
            func()
        except Exception as exc:
            log.warning(kv(event="close_failed", part=what, error=one_line(exc)))

    # ================================================================ the main loop
    def run(self, until: Callable[[], bool] | None = None) -> None:
        """Loop until :meth:`request_stop` (or ``until()`` is true), then :meth:`stop`."""
        interval = notify.watchdog_interval()
        fed = snap = tick = float("-inf")
        try:
            while not self._stop.is_set() and not (until is not None and until()):
                try:
                    event = self.events.get(timeout=max(0.0, tick + TICK_S - time.monotonic()))
                except queue.Empty:
                    event = None
                if event is not None:
                    self.dispatch(event)
                now = time.monotonic()
                if now - tick >= TICK_S:
                    tick = now
                    self.dispatch(Tick(now))
                if interval and now - fed >= interval / 2:
                    notify.watchdog()  # from this loop only: a stalled loop stops feeding it
                    fed = now
                if now - snap >= SNAPSHOT_S:
                    self._refresh_snapshot()
                    snap = now
        finally:
            self.stop()

    def dispatch(self, event: Any) -> None:
        """One event: sound it if it is a key, then the state machine, then its actions."""
        if isinstance(event, _Reload):
            self._apply_reload(event)
            return
        if not isinstance(event, Tick):
            self.counts["events"] += 1
            self._publish(event_dict(event))
        try:
            actions = self._need_box.handle(event)
        except Exception:
            self.counts["state_errors"] += 1
            log.exception(kv(event="state_machine_failed", input=type(event).__name__))
            return
        for a in actions:
            self._do(a)

    def _is_transport(self, event: Any) -> bool:
        k = self.cfg.keyboard
        return isinstance(event, ControlChange) and event.control in (
            k.cc_play,
            k.cc_stop,
            k.cc_record,
        )

    def _do(self, a: Action) -> None:
        self.counts["actions"] += 1
        self._publish({"action": a.name, **{k: v for k, v in a.args.items() if k not in BIG_ARGS}})
        try:
            getattr(self, "do_" + a.name)(**a.args)
        except Exception:  # one failed action must not take the keys down with it
            self.counts["action_errors"] += 1
            log.exception(kv(event="action_failed", action=a.name))

    def _publish(self, item: dict[str, Any]) -> None:
        if self.control is not None:
            self.control.publish(item)

    # ================================================================ the actions
    def do_log(self, message: str) -> None:
        log.info(message)

    def do_set_led(self, led: str, state: str) -> None:
        self._need_panel.set_led(led, state)

    def do_show_genre(self, genre: str, index: int | None) -> None:
        self._need_panel.set_genre(index)

    def do_set_tempo(self, bpm: float) -> None:
        self._need_seq.set_tempo(bpm)

    def do_start_metronome(
        self, bpm: float, t0: float, count_in_bars: int, through_recording: bool
    ) -> None:
        self._need_seq.set_tempo(bpm)
        self._need_seq.metronome = through_recording
        self._need_seq.count_in(count_in_bars)

    def do_stop_metronome(self) -> None:
        self._need_seq.metronome = False
        self._need_seq.stop()

    def do_start_playback(self, composition: Composition, bpm: float) -> None:
        self._need_seq.set_tempo(bpm)
        self._need_seq.play(composition)

    def do_queue_switch(self, composition: Composition) -> None:
        self._need_seq.queue(composition)

    def do_stop_playback(self) -> None:
        self._need_seq.stop()
        # STOP is also the panic button: a note whose note-off was lost (a keyboard
        # unplugged mid-note) is released too, the keys' channel included.
        self._need_synth.all_notes_off()

    def do_start_generation(self, genre: str, seed: int, take: Take, bpm: float) -> None:
        self._generate_pool.submit(self._generate, genre, seed, take, bpm)

    def do_save_take(self, take: Take) -> None:
        self._save_pool.submit(self._save_take, take)

    def do_save_composition(self, composition: Composition, genre: str, seed: int) -> None:
        self._save_pool.submit(self._save_composition, composition, genre, seed)

    # ================================================================ the workers
    def _generate(self, genre: str, seed: int, take: Take, bpm: float) -> None:
        """Generation worker: compose, then post GenerationDone (never raises)."""
        from deepkeys.device.generation.arrange import compose

        t0 = time.monotonic()
        try:
            generator = self.generators.get(genre)
            if generator is None:
                raise UserError(f"no model loaded for genre {genre!r}")
            comp = compose(take, generator, seed=seed, tempo_bpm=bpm, hints=take.hints)
            done = GenerationDone(genre, seed, comp, t=time.monotonic())
            self.counts["generations"] += 1
            log.info(
                kv(
                    event="generated",
                    genre=genre,
                    seed=seed,
                    groove=comp.groove or "-",
                    ms=round((time.monotonic() - t0) * 1e3, 1),
                )
            )
        except Exception as exc:
            self.counts["generation_errors"] += 1
            done = GenerationDone(genre, seed, None, error=one_line(exc), t=time.monotonic())
            log.error(kv(event="generation_failed", genre=genre, seed=seed, error=done.error))
        # GenerationDone must not be lost to a full queue: wait for room, unless stopping.
        while not self._stop.is_set():
            try:
                self.events.put(done, timeout=0.1)
                return
            except queue.Full:
                continue

    def _stamp(self) -> str:
        now = datetime.now(UTC)
        return now.strftime("%Y%m%d-%H%M%S-") + f"{now.microsecond // 1000:03d}"

    def _save_take(self, take: Take) -> None:
        """Save worker: the take as a one-track MIDI file plus a sidecar, in takes/.

        With rhythm assist the file holds the notes on the grid, as the model read them;
        without it, the notes as they were played.
        """
        from deepkeys.device.generation.midifile import write_timeline
        from deepkeys.device.timeline import track_events

        if take.rhythm_assist:
            grid = Composition([Track("melody", 0, list(take.notes))], take.n_steps, take.tempo_bpm)
            events = track_events(grid, 0)
        else:
            events = take.performance_events()
        meta = {
            "kind": "take",
            "tempo": take.tempo_bpm,
            "bars": take.n_steps // STEPS_PER_BAR,
            "notes": len(take.notes),
            "rhythm_assist": take.rhythm_assist,
            # Fingered below the split point: half-bar cell -> chord name.
            "chord_hints": {str(cell): chord.name for cell, chord in sorted(take.hints.items())},
            "time": datetime.now(UTC).isoformat(timespec="seconds"),
        }
        length = take.n_steps / STEPS_PER_BEAT
        self._write_pair(
            self.cfg.paths.state_dir / "takes",
            f"take-{self._stamp()}",
            lambda path: write_timeline([("melody", events)], take.tempo_bpm, length, path),
            meta,
        )

    def _save_composition(self, comp: Composition, genre: str, seed: int) -> None:
        """Save worker: .mid + .json in compositions/, then the publish command."""
        from deepkeys.device.generation.midifile import write_composition

        generator = self.generators.get(genre)
        meta = {
            "kind": "composition",
            "genre": genre,
            "seed": seed,
            "groove": comp.groove,
            "tempo": comp.tempo_bpm,
            "bars": comp.n_steps // STEPS_PER_BAR,
            "tracks": [t.name for t in comp.tracks],
            "chords": progression_text(comp.chords),  # what every part plays, bar by bar
            "chords_per_half_bar": [c.name for c in comp.chords],
            "model_sha256": generator.card.sha256 if generator else None,
            "time": datetime.now(UTC).isoformat(timespec="seconds"),
        }
        paths = self._write_pair(
            self.cfg.paths.state_dir / "compositions",
            f"{self._stamp()}-{genre}-{seed}",
            lambda path: write_composition(comp, path),
            meta,
        )
        if paths is not None and self.cfg.publish.command:
            self._run_publish(*paths)

    def _write_pair(
        self, folder: Path, stem: str, write_mid: Callable[[Path], None], meta: dict[str, Any]
    ) -> tuple[Path, Path] | None:
        """MIDI first, then its sidecar, both atomic. A full disk is logged and counted."""
        mid, side = folder / f"{stem}.mid", folder / f"{stem}.json"
        free_mb = free_megabytes(self.cfg.paths.state_dir)
        if free_mb is not None and free_mb < self.cfg.paths.min_free_mb:
            self.counts["save_skipped_low_space"] += 1
            log.error(
                kv(
                    event="save_skipped",
                    path=mid,
                    reason="low_space",
                    free_mb=free_mb,
                    min_free_mb=self.cfg.paths.min_free_mb,
                )
            )
            return None
        try:
            folder.mkdir(parents=True, exist_ok=True)
            write_mid(mid)
            atomic_write_bytes(side, (json.dumps(meta, indent=2) + "\n").encode())
        except OSError as exc:
            self.counts["save_errors"] += 1
            log.error(kv(event="save_failed", path=mid, error=exc.strerror or one_line(exc)))
            return None
        self.counts["saved"] += 1
        log.info(kv(event="saved", mid=mid, json=side))
        self._publish({"event": "saved", "mid": str(mid), "json": str(side)})
        return mid, side

    def _run_publish(self, mid: Path, side: Path) -> None:
        """Save worker: run the command here, or, under systemd, queue it for the
        publish unit's sandbox (the daemon's own has no network; see ``publish``)."""
        spool = publish.spool_from_env()
        if spool is None:
            if not publish.run_command(self.cfg.publish, mid, side):
                self.counts["publish_errors"] += 1
            return
        try:
            publish.queue_request(spool, mid, side)
        except OSError as exc:
            self.counts["publish_errors"] += 1
            log.error(kv(event="publish_failed", mid=mid, error=exc.strerror or one_line(exc)))

    # ================================================================ control socket
    def _reload(self, request: dict[str, Any]) -> dict[str, Any]:
        """Control thread: rescan the model folders (``deepkeys receive`` asks after a
        deploy). Models load here, off the main loop, so the keys keep sounding; the
        loop then swaps them in and gives the GENRE button its new list."""
        with self._reload_lock:
            before = dict(self.generators)
            generators, errors = self._scan_models(before)
            swap = _Reload(generators)
            try:
                self.events.put(swap, timeout=1.0)
            except queue.Full:
                raise UserError("the daemon is busy (event queue full); try again") from None
            if not swap.applied.wait(RELOAD_TIMEOUT_S):
                raise UserError(
                    f"the daemon did not apply the reload within {RELOAD_TIMEOUT_S:g} s"
                )
        changed = [g for g in generators if before.get(g) is not generators[g]]
        log.info(
            kv(
                event="models_reloaded",
                genres=",".join(generators) or "none",
                changed=",".join(changed) or "none",
                errors=len(errors),
            )
        )
        return {
            "genres": list(generators),
            "changed": changed,
            "removed": [g for g in before if g not in generators],
            "errors": errors,
            "sha256": {g: gen.card.sha256 for g, gen in generators.items()},
        }

    def _apply_reload(self, swap: _Reload) -> None:
        """Main loop: the new generators, and the GENRE button's new list."""
        self.generators = swap.generators
        try:
            for a in self._need_box.set_genres(list(swap.generators)):
                self._do(a)
        finally:
            swap.applied.set()

    def _press(self, request: dict[str, Any]) -> dict[str, Any]:
        """Control thread: a panel press from the CLI; only queues it."""
        name = request.get("button")
        kind = request.get("kind", "press")
        if name not in BUTTONS:
            raise UserError(f"unknown button {name!r} (known: {', '.join(BUTTONS)})")
        if kind not in ("press", "long", "repeat"):
            raise UserError(f"unknown press kind {kind!r} (known: press, long, repeat)")
        try:
            self.events.put_nowait(Button(name, kind, t=time.monotonic()))
        except queue.Full:
            raise UserError("the daemon is busy (event queue full); try again") from None
        return {"button": name, "kind": kind}

    def _refresh_snapshot(self) -> None:
        """Build the status dict anew; the control threads only ever read a whole one."""
        box = self.box
        snap: dict[str, Any] = dict(box.status()) if box is not None else {"state": "starting"}
        generator = self.generators.get(snap.get("genre", ""))
        snap["model_sha256"] = generator.card.sha256 if generator else None
        snap["uptime_s"] = round(time.monotonic() - self.started_t, 1)
        if self.midi is not None:
            snap["midi"] = self.midi.stats()
        if self.audio is not None:
            s = self.audio.stats()
            snap["audio"] = {
                "device": s.device,
                "rate": s.rate,
                "period": s.period,
                "buffer": s.buffer,
                "periods_written": s.periods_written,
                "underruns": s.underruns,
                "errors": s.errors,
                "realtime": s.realtime,
                "render_ms_mean": round(s.render_ms_mean, 3),
                "render_ms_p99": round(s.render_ms_p99, 3),
                "render_ms_max": round(s.render_ms_max, 3),
            }
        if (seq := self.seq) is not None:
            snap["sequencer"] = {"state": seq.state, "tempo": seq.tempo, "loops": seq.loops}
        if (synth := self.synth) is not None:
            snap["voices"] = synth.active_voices()
        try:
            samples = sorted(list(self._latency))  # the audio thread appends meanwhile
        except RuntimeError:
            samples = []
        if samples:
            snap["latency_ms"] = {
                "n": len(samples),
                "p50": round(samples[len(samples) // 2] * 1e3, 2),
                "p99": round(samples[int(len(samples) * 0.99)] * 1e3, 2),
                "max": round(samples[-1] * 1e3, 2),
            }
        if self.panel is not None:
            snap["leds"] = self.panel.leds
        snap["queue"] = self.events.qsize()
        snap["counts"] = dict(self.counts)
        self.snapshot = snap


def run_daemon(cfg: Config) -> int:
    """``deepkeys run``: start, loop until SIGTERM or SIGINT, shut down cleanly."""
    daemon = Daemon(cfg)
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda signum, frame: daemon.request_stop())
    daemon.start()
    daemon.run()
    return 0
