"""Training on several workers: TensorFlow's MultiWorkerMirroredStrategy, the Keras way.

Each worker is one process that runs the same training (:mod:`deepkeys.host.train`)
with a ``TF_CONFIG`` naming every worker and its own index; worker 0 is the chief.
Every worker draws the same global batch from the same seed and trains on its slice
of it; the optimizers sum the replicas' gradients, each scaled by the number of
replicas, so N workers take the step one worker takes on the whole batch. Only the
chief writes the log, the plot and the best weights; every worker checkpoints (the
chief into the run folder, the others into a scratch folder they delete), and every
worker restores from the chief's checkpoint, so any of them can resume.

On a cluster each node runs ``deepkeys train`` itself with its ``TF_CONFIG``, the
run folder and the data on a filesystem they all see. ``deepkeys train --workers N``
starts N local workers (:func:`launch_local`): a supervisor that, when a worker dies,
stops the others and starts them all again from the last checkpoint, as a cluster
manager restarts a preempted job.

>>> Cluster.from_tf_config('{"cluster": {"worker": ["a:1", "b:2"]}, '
...                        '"task": {"type": "worker", "index": 1}}')
Cluster(workers=2, rank=1)
>>> Cluster.from_tf_config(None).is_chief
True
"""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from deepkeys.device.errors import UserError

log = logging.getLogger("deepkeys.train")

#: How often the supervisor restarts the workers after one fails, before giving up.
MAX_RESTARTS = 3
SPEC_NAME = "workers.json"  # what --workers writes for its workers: the train() arguments


@dataclass(frozen=True)
class Cluster:
    """This process's place among the training workers."""

    workers: int = 1
    rank: int = 0

    @property
    def is_chief(self) -> bool:
        return self.rank == 0

    @classmethod
    def from_tf_config(cls, text: str | None) -> Cluster:
        """From a ``TF_CONFIG`` value; no value (or one worker) is a single worker."""
        if not text:
            return cls()
        try:
            config = json.loads(text)
            workers = list(config["cluster"].get("worker", []))
            chief = list(config["cluster"].get("chief", []))
            task = config["task"]
            kind, index = str(task["type"]), int(task["index"])
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise UserError(f"TF_CONFIG is not a TensorFlow cluster spec ({exc})") from None
        if chief:
            # Keras's other layout: a chief task plus workers. Rank the chief first.
            return cls(len(chief) + len(workers), 0 if kind == "chief" else index + 1)
        if kind != "worker" or not 0 <= index < len(workers):
            raise UserError(
                f"TF_CONFIG: task {kind} {index} is not one of its {len(workers)} workers"
            )
        return cls(len(workers), index)

    def __repr__(self) -> str:
        return f"Cluster(workers={self.workers}, rank={self.rank})"


def current() -> Cluster:
    return Cluster.from_tf_config(os.environ.get("TF_CONFIG"))


def strategy_for(cluster: Cluster) -> Any:
    """MultiWorkerMirroredStrategy for a cluster, TensorFlow's default strategy for one."""
    import tensorflow as tf

    if cluster.workers == 1:
        return tf.distribute.get_strategy()
    # A worker that dies must not leave the others waiting on it for ever: their next
    # collective fails after this long, and the supervisor (or the cluster) restarts them.
    options = tf.distribute.experimental.CommunicationOptions(timeout_seconds=120)
    return tf.distribute.MultiWorkerMirroredStrategy(communication_options=options)


def tf_config(ports: list[int], rank: int) -> str:
    """The ``TF_CONFIG`` of local worker ``rank`` among workers on these ports."""
    workers = [f"127.0.0.1:{p}" for p in ports]
    return json.dumps({"cluster": {"worker": workers}, "task": {"type": "worker", "index": rank}})


def free_ports(n: int) -> list[int]:
    """``n`` TCP ports free on 127.0.0.1 now (the OS picks them)."""
    sockets = [socket.socket() for _ in range(n)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def launch_local(spec: dict[str, Any], workers: int, run_dir: Path) -> None:
    """Run ``train(**spec)`` on ``workers`` local processes (each one
    ``python -m deepkeys.host.train SPEC``) until they all finish.

    Each worker's output goes to ``run_dir/workers/worker-K.log`` and its process id to
    ``worker-K.pid``. When one exits with an error (or is killed), the others are
    stopped and all of them start again, resuming from the chief's last checkpoint, at
    most :data:`MAX_RESTARTS` times.
    """
    folder = run_dir / "workers"
    folder.mkdir(parents=True, exist_ok=True)
    spec_path = run_dir / SPEC_NAME
    for attempt in range(MAX_RESTARTS + 1):
        spec_path.write_text(json.dumps({**spec, "resume": spec["resume"] or attempt > 0}))
        ports = free_ports(workers)
        procs: list[subprocess.Popen] = []
        echoes: list[threading.Thread] = []
        for rank in range(workers):
            log_path = folder / f"worker-{rank}.log"
            with open(log_path, "a") as out:
                procs.append(
                    subprocess.Popen(
                        [sys.executable, "-m", "deepkeys.host.train", str(spec_path)],
                        env={**os.environ, "TF_CONFIG": tf_config(ports, rank)},
                        stdout=subprocess.PIPE if rank == 0 else out,
                        stderr=subprocess.STDOUT,
                        text=True,
                        start_new_session=True,  # Ctrl-C reaches the supervisor, which stops them
                    )
                )
            (folder / f"worker-{rank}.pid").write_text(f"{procs[-1].pid}\n")
            if rank == 0:  # the chief's progress is the run's: shown here and kept in its log
                echoes.append(threading.Thread(target=_echo, args=(procs[0], log_path)))
                echoes[0].start()
        log.info("workers=%d started attempt=%d ports=%s", workers, attempt + 1, ports)
        try:
            failed = _wait(procs)
        except BaseException:
            _stop(procs)
            raise
        finally:
            for echo in echoes:
                echo.join(timeout=10)
        if failed is None:
            log.info("workers=%d finished attempt=%d", workers, attempt + 1)
            return
        rank, code = failed
        _stop(procs)
        if code == 2:  # a user error (bad data, bad options): every restart would say the same
            raise UserError(_last_error(folder / f"worker-{rank}.log"))
        log.warning(
            "worker=%d exit=%d restart=%d of %d (log: %s)",
            rank,
            code,
            attempt + 1,
            MAX_RESTARTS,
            folder / f"worker-{rank}.log",
        )
    raise UserError(
        f"the training workers failed {MAX_RESTARTS + 1} times; see {folder}/worker-*.log"
    )


def _echo(proc: subprocess.Popen, log_path: Path) -> None:
    """Copy a worker's output to its log file and to this process's stderr."""
    assert proc.stdout is not None
    with open(log_path, "a") as log_file:
        for line in proc.stdout:
            log_file.write(line)
            log_file.flush()
            sys.stderr.write(line)


def _wait(procs: list[subprocess.Popen]) -> tuple[int, int] | None:
    """Until every worker exits 0 (None) or one fails: (its rank, its exit code)."""
    while True:
        codes = [p.poll() for p in procs]
        for rank, code in enumerate(codes):
            if code not in (None, 0):
                return rank, code
        if all(code == 0 for code in codes):
            return None
        time.sleep(0.2)


def _last_error(path: Path) -> str:
    """A failed worker's one-line error, from its log."""
    lines = [line for line in path.read_text(errors="replace").splitlines() if line.strip()]
    said = [line.removeprefix("deepkeys: ") for line in lines if line.startswith("deepkeys: ")]
    return said[-1] if said else f"a training worker failed; see {path}"


def _stop(procs: list[subprocess.Popen], grace: float = 10.0) -> None:
    """SIGTERM every worker still running, SIGKILL after ``grace`` seconds."""
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + grace
    for p in procs:
        try:
            p.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
