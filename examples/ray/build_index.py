#!/usr/bin/env python3
"""Build an img2prompt prompt index with Ray: one task per shard, then one merge.

Each Ray task runs ``img2prompt index build ... --shard I/N --out WORK/shard-I`` as a
subprocess; when every shard has succeeded, the driver runs
``img2prompt index merge --out OUT WORK/shard-0 ... WORK/shard-(N-1)``. For ``--spec ivf`` or
``--spec ivf-pq`` the coarse quantizer (and PQ) is first trained once, in one task
(``img2prompt index train ... --sample S --out WORK/trained``), and every shard gets
``--trained WORK/trained``.

The same script runs on a laptop and on a cluster::

    # laptop: starts a local Ray instance (ray.init())
    python examples/ray/build_index.py --clip openai/clip-vit-base-patch32 \\
        --prompts prompts.parquet --shards 8 --out index
    # cluster: connects to a running one (ray.init(address=...))
    python examples/ray/build_index.py --address auto --img2prompt /shared/bin/img2prompt \\
        --clip /shared/models/clip --prompts /shared/corpus --shards 512 \\
        --num-cpus 8 --out /shared/index --work /shared/index.shards

On a cluster, every path (``--img2prompt``, ``--prompts``, model directories, ``--work``,
``--out``) must be the same path on every node: ``--work`` in particular MUST be a shared
filesystem (NFS, Lustre, a FUSE-mounted bucket with POSIX rename...), because shards are
written there by whichever node runs the task and read back by the merge on the driver's
node, and a retried shard resumes from what the failed attempt left there, possibly on
another node. Models named rather than given as directories are looked up in each node's
``$IMG2PROMPT_HOME``; the driver forwards its own ``IMG2PROMPT_*`` environment variables
to the tasks.

Threads: each task's subprocess gets ``OMP_NUM_THREADS``, ``RAYON_NUM_THREADS`` and
``OPENBLAS_NUM_THREADS`` set to ``--num-cpus``. Ray runs several tasks side by side on one node,
each granted ``--num-cpus`` cores, but the encoders' thread pools size themselves from the
whole node's core count: without these, N tasks on a node would each start one thread per
core and oversubscribe it N-fold.

Failures: a shard whose subprocess exits non-zero raises an exception carrying the tail of
its stderr; Ray retries it (``--max-retries``, default 3, also on worker or node loss). A
retried shard resumes: ``index build`` continues an interrupted build when re-run with the
same arguments, and a shard whose directory is already complete is not rebuilt. Re-running
the whole script with the same arguments therefore also resumes. To build from another
corpus, models or spec, use a new ``--work`` directory (the merge refuses shards that
disagree). Each attempt's output is appended to ``WORK/logs/shard-I.log``.

Test hook: with ``IMG2PROMPT_RAY_FAIL_ONCE=DIR`` in the driver's environment, the first
attempt of shard 1 (shard 0 when ``--shards 1``) creates ``DIR/failed-once``, starts its
build, kills it (SIGKILL) as soon as the build has made rows durable (or after a few seconds), and
raises; since the marker then exists, the retry runs normally and must succeed. The
integration test (crates/img2prompt-cli/tests/ray_build.rs) uses it to prove that a failed
shard is retried and resumes. Do not set it otherwise.

Needs only Python >= 3.11 and ``ray`` (scripts/setup.sh installs a pinned one into
``$IMG2PROMPT_HOME/ray-venv``; run the script with that venv's python). Exit status: 0 on
success, 1 when a shard, the training or the merge failed, 2 on bad arguments.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

FAIL_ONCE_ENV = "IMG2PROMPT_RAY_FAIL_ONCE"
FAIL_ONCE_MARKER = "failed-once"
# The IVF specs need a quantizer trained once, before the shards are encoded.
TRAINED_SPECS = frozenset({"ivf", "ivf-pq"})
# Lines of a failed subprocess's output carried by the exception (and so shown by Ray).
STDERR_TAIL_LINES = 25
STDERR_TAIL_CHARS = 4000
# The test hook kills its build as soon as it has made rows durable (or, failing that, after
# FAIL_ONCE_MAX_S).
FAIL_ONCE_MAX_S = 8.0
MANIFEST = "manifest.json"


class UsageError(Exception):
    """A bad argument or environment: exit status 2."""


class StepFailed(RuntimeError):
    """A subprocess (shard build, training) exited non-zero; the message carries its stderr tail.

    Raised inside a Ray task, it makes Ray retry the task (``retry_exceptions=True``).
    """


@dataclass(frozen=True)
class Step:
    """One subprocess to run in a Ray task (a shard build or the training)."""

    name: str  # "shard 1/3" or "train"
    argv: list[str]
    out_dir: str  # complete once out_dir/manifest.json exists (the CLI swaps it in atomically)
    log_path: str
    attempts_path: str
    env: dict[str, str]
    fail_once_dir: str | None = None  # the test hook, set for one shard only
    # Shards: a complete out_dir is kept (a retry after the build finished, or a re-run).
    # Training (not resumable): every attempt starts from an empty out_dir.
    resumable: bool = True


@dataclass
class StepResult:
    """What a task hands back to the driver."""

    name: str
    seconds: float
    attempts: int
    node: str
    skipped: bool
    last_line: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


# ---------------------------------------------------------------- runs inside the Ray tasks


def _count_attempt(path: str) -> int:
    """Appends one line to the attempt file and returns how many lines it holds.

    Ray does not tell a task which attempt it is; the attempt file lives in the shared work
    directory, under a directory unique to this driver run.
    """
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "a", encoding="utf-8") as f:
        f.write(f"{time.time():.3f} pid {os.getpid()}\n")
    with open(path, encoding="utf-8") as f:
        return sum(1 for _ in f)


def _tail(path: str, start: int) -> str:
    """The last lines of what was appended to ``path`` from byte ``start`` on."""
    try:
        with open(path, "rb") as f:
            f.seek(start)
            text = f.read().decode("utf-8", errors="replace")
    except OSError as e:
        return f"(no log: {e})"
    # Progress bars redraw with carriage returns: keep each line's last state.
    lines = [ln.rsplit("\r", 1)[-1] for ln in text.splitlines()]
    lines = [ln for ln in lines if ln.strip()]
    tail = "\n".join(lines[-STDERR_TAIL_LINES:])
    return tail[-STDERR_TAIL_CHARS:]


def _popen_dying_with_parent(
    argv: list[str], env: dict[str, str], log: Any
) -> subprocess.Popen[bytes]:
    """Starts ``argv`` so that it is killed when this worker process dies.

    If Ray kills the worker (task cancelled, memory monitor, driver interrupted), an orphaned
    ``index build`` would keep encoding and hold the shard's build lock, so the retry would
    fail. On Linux the child asks for SIGKILL on its parent's death (PR_SET_PDEATHSIG) through
    a tiny Python trampoline that then execs the binary (``preexec_fn`` is unsafe in Ray's
    multi-threaded workers).
    """
    if sys.platform.startswith("linux"):
        trampoline = (
            "import ctypes, os, signal, sys\n"
            "ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)\n"  # PR_SET_PDEATHSIG
            "if os.getppid() != int(sys.argv[1]): os._exit(1)\n"  # the parent died already
            "os.execv(sys.argv[2], sys.argv[2:])\n"
        )
        argv = [sys.executable, "-c", trampoline, str(os.getpid()), *argv]
    return subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=log)


def run_step(step: Step) -> StepResult:
    """Body of a Ray task: runs one step's subprocess, raises StepFailed on failure."""
    import ray  # the worker has it

    started = time.monotonic()
    attempt = _count_attempt(step.attempts_path)
    node = socket.gethostname() or ray.get_runtime_context().get_node_id()[:8]
    binary = step.argv[0]
    if not (os.path.isfile(binary) and os.access(binary, os.X_OK)):
        raise StepFailed(f"{step.name}: {binary} is not an executable file on node {node}")
    if step.resumable and _is_complete(step.out_dir):
        return StepResult(step.name, time.monotonic() - started, attempt, node, skipped=True)
    if not step.resumable and os.path.lexists(step.out_dir):
        shutil.rmtree(step.out_dir)

    env = dict(os.environ)
    env.update(step.env)
    os.makedirs(os.path.dirname(step.log_path), exist_ok=True)
    with open(step.log_path, "ab") as log:
        log.write(f"\n=== {step.name} attempt {attempt} on {node} pid {os.getpid()} "
                  f"{time.strftime('%Y-%m-%dT%H:%M:%S%z')}\n$ {' '.join(step.argv)}\n".encode())
        log.flush()
        start = log.tell()
        proc = _popen_dying_with_parent(step.argv, env, log)
        if step.fail_once_dir is not None:
            marker = Path(step.fail_once_dir) / FAIL_ONCE_MARKER
            if not marker.exists():
                marker.parent.mkdir(parents=True, exist_ok=True)
                marker.write_text(f"{step.name} attempt {attempt} on {node}\n", encoding="utf-8")
                _kill_part_way(proc, step.out_dir)
                raise StepFailed(
                    f"{step.name}: killed on purpose ({FAIL_ONCE_ENV} test hook, attempt "
                    f"{attempt}); Ray retries it"
                )
        try:
            code = proc.wait()
        except BaseException:
            proc.kill()
            proc.wait()
            raise
    tail = _tail(step.log_path, start)
    if code != 0:
        how = f"killed by signal {-code}" if code < 0 else f"exit status {code}"
        raise StepFailed(
            f"{step.name} failed ({how}, attempt {attempt} on {node}; "
            f"full log: {step.log_path}):\n{tail}"
        )
    last = tail.splitlines()[-1] if tail else ""
    return StepResult(step.name, time.monotonic() - started, attempt, node, False, last)


def _is_complete(out_dir: str) -> bool:
    """The CLI swaps a finished index directory into place atomically, manifest included."""
    return os.path.isfile(os.path.join(out_dir, MANIFEST))


def _staged_rows(staging: Path) -> int:
    """Rows an interrupted build has made durable so far (0 when unknown)."""
    try:
        with open(staging / "staging.json", encoding="utf-8") as f:
            rows = json.load(f).get("rows", 0)
        return rows if isinstance(rows, int) else 0
    except (OSError, ValueError):
        return 0


def _kill_part_way(proc: subprocess.Popen[bytes], out_dir: str) -> None:
    """Test hook: SIGKILLs ``proc`` as soon as it has made rows durable (or after a while)."""
    out = Path(out_dir)
    staging = out.parent / f".{out.name}.knn-staging"  # knn-index's staging directory
    deadline = time.monotonic() + FAIL_ONCE_MAX_S
    while time.monotonic() < deadline and proc.poll() is None:
        if _staged_rows(staging) > 0:
            break
        time.sleep(0.01)
    if proc.poll() is None:
        proc.send_signal(signal.SIGKILL)
    proc.wait()


# ---------------------------------------------------------------------------- the driver


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description="Build an img2prompt prompt index with Ray: one task per shard, then merge.",
        epilog="On a cluster, --work must be a shared filesystem (see the module docstring).",
    )
    p.add_argument("--img2prompt", metavar="PATH",
                   help="the img2prompt binary (default: $IMG2PROMPT_BIN, else img2prompt on PATH)")
    p.add_argument("--clip", required=True, help="CLIP checkpoint (directory or known name)")
    p.add_argument("--sentence", help="sentence-transformers model (default: the CLI's)")
    p.add_argument("--prompts", required=True, nargs="+", metavar="FILE",
                   help="prompt corpora (files or directories), as for `index build`")
    p.add_argument("--column", help="JSONL field / CSV or Parquet column (passed through)")
    p.add_argument("--shards", required=True, type=int, metavar="N", help="number of shards")
    p.add_argument("--out", required=True, metavar="DIR", help="the merged index")
    p.add_argument("--work", metavar="DIR",
                   help="shard directories, logs and the trained quantizer (default: OUT.shards); "
                        "on a cluster a shared filesystem")
    p.add_argument("--spec", help="FAISS index spec (passed through); ivf/ivf-pq train first")
    p.add_argument("--sample", type=int, default=65536,
                   help="prompts sampled to train ivf/ivf-pq (default: 65536)")
    p.add_argument("--batch", type=int, help="encoder batch size (passed through)")
    p.add_argument("--chunk", type=int,
                   help="prompts per durable chunk of each shard build (passed through)")
    p.add_argument("--backend", help="encoder backend, e.g. cuda with --num-gpus (passed through)")
    p.add_argument("--num-cpus", type=float, default=1.0,
                   help="CPUs per task (Ray resource and encoder threads; default: 1)")
    p.add_argument("--num-gpus", type=float, default=0.0, help="GPUs per task (default: 0)")
    p.add_argument("--max-retries", type=int, default=3,
                   help="retries per failed task (default: 3)")
    p.add_argument("--address",
                   help="Ray cluster to join, e.g. auto or ray://head:10001 "
                        "(default: start a local Ray)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace an existing index at --out (passed to merge)")
    return p


@dataclass(frozen=True)
class Plan:
    binary: str
    out: str
    work: str
    shards: int
    prompts: list[str]
    build_args: list[str]  # `index build` options common to every shard
    train_args: list[str] | None  # `index train` argv, or None
    trained: str | None
    merge_argv: list[str]
    threads: int
    env: dict[str, str]


def _resolve_binary(given: str | None) -> str:
    name = given or os.environ.get("IMG2PROMPT_BIN") or "img2prompt"
    where = "--img2prompt" if given else ("$IMG2PROMPT_BIN" if os.environ.get("IMG2PROMPT_BIN")
                                          else "PATH")
    found = shutil.which(name) if os.sep not in name else name
    if found is None or not os.path.isfile(found):
        hint = "" if given else " (pass --img2prompt PATH or set IMG2PROMPT_BIN)"
        raise UsageError(f"img2prompt binary {name!r} from {where} not found{hint}")
    if not os.access(found, os.X_OK):
        raise UsageError(f"img2prompt binary {found} is not executable")
    return os.path.abspath(found)


def _model_arg(value: str) -> str:
    """A model given as an existing path becomes absolute (tasks run in other directories)."""
    return os.path.abspath(value) if os.path.exists(value) else value


def _plan(a: argparse.Namespace) -> Plan:
    if a.shards < 1:
        raise UsageError(f"--shards must be at least 1, got {a.shards}")
    if a.num_cpus <= 0:
        raise UsageError(f"--num-cpus must be positive, got {a.num_cpus}")
    if a.num_gpus < 0:
        raise UsageError(f"--num-gpus must not be negative, got {a.num_gpus}")
    if a.max_retries < 0:
        raise UsageError(f"--max-retries must not be negative, got {a.max_retries}")
    if a.batch is not None and a.batch < 1:
        raise UsageError(f"--batch must be at least 1, got {a.batch}")
    if a.sample < 1:
        raise UsageError(f"--sample must be at least 1, got {a.sample}")
    binary = _resolve_binary(a.img2prompt)
    prompts = []
    for p in a.prompts:
        if not os.path.exists(p):
            raise UsageError(f"--prompts: {p} does not exist")
        prompts.append(os.path.abspath(p))
    out = os.path.abspath(a.out)
    empty_dir = os.path.isdir(out) and not os.listdir(out)
    if os.path.lexists(out) and not a.overwrite and not empty_dir:
        raise UsageError(f"--out {out} exists; pass --overwrite to replace it")
    work = os.path.abspath(a.work) if a.work else out + ".shards"
    if work == out:
        raise UsageError("--work must differ from --out")
    if os.path.exists(work) and not os.path.isdir(work):
        raise UsageError(f"--work {work} exists and is not a directory")

    clip = _model_arg(a.clip)
    common: list[str] = ["--clip", clip]
    if a.sentence:
        common += ["--sentence", _model_arg(a.sentence)]
    runtime: list[str] = []
    if a.column:
        runtime += ["--column", a.column]
    if a.backend:
        runtime += ["--backend", a.backend]
    if a.batch is not None:
        runtime += ["--batch", str(a.batch)]

    spec = a.spec
    train_args = None
    trained = None
    if spec is not None and spec.lower() in TRAINED_SPECS:
        trained = os.path.join(work, "trained")
        train_args = [binary, "index", "train", "--clip", clip, *runtime, "--spec", spec,
                      "--sample", str(a.sample), "--out", trained, "--prompts", *prompts]
    build_args = [*common, *runtime]
    if a.chunk is not None:
        build_args += ["--chunk", str(a.chunk)]
    if trained is not None:
        # The trained quantizer sets the spec (its factory string, sized for the whole corpus:
        # `--spec ivf` on a shard would size the lists for that shard alone).
        build_args += ["--trained", trained]
    elif spec is not None:
        build_args += ["--spec", spec]

    merge_argv = [binary, "index", "merge", "--out", out]
    if a.overwrite:
        merge_argv.append("--overwrite")
    merge_argv += [os.path.join(work, f"shard-{i}") for i in range(a.shards)]

    # Ray packs several tasks onto one node, each told it has `num_cpus` cores; the encoders'
    # thread pools (rayon in burn, OpenMP in FAISS, OpenBLAS) would otherwise each start one
    # thread per core of the whole node and oversubscribe it N-fold.
    threads = max(1, int(a.num_cpus))
    env = {k: v for k, v in os.environ.items()
           if k.startswith("IMG2PROMPT_") and k not in (FAIL_ONCE_ENV, "IMG2PROMPT_BIN")}
    env.update({
        "OMP_NUM_THREADS": str(threads),
        "RAYON_NUM_THREADS": str(threads),
        "OPENBLAS_NUM_THREADS": str(threads),
        "MKL_NUM_THREADS": str(threads),
        # As scripts/img2prompt: FAISS's OpenMP threads must not spin against OpenBLAS's.
        "OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY", "PASSIVE"),
    })
    return Plan(binary, out, work, a.shards, prompts, build_args, train_args, trained, merge_argv,
                threads, env)


def _shard_steps(plan: Plan, run_dir: str, fail_once: str | None) -> list[Step]:
    fail_shard = 1 if plan.shards > 1 else 0
    steps = []
    for i in range(plan.shards):
        out_dir = os.path.join(plan.work, f"shard-{i}")
        argv = [plan.binary, "index", "build", *plan.build_args, "--shard", f"{i}/{plan.shards}",
                "--out", out_dir, "--prompts", *plan.prompts]
        steps.append(Step(
            name=f"shard {i}/{plan.shards}",
            argv=argv,
            out_dir=out_dir,
            log_path=os.path.join(plan.work, "logs", f"shard-{i}.log"),
            attempts_path=os.path.join(run_dir, f"shard-{i}"),
            env=plan.env,
            fail_once_dir=fail_once if i == fail_shard else None,
        ))
    return steps


def _train_step(plan: Plan, run_dir: str) -> Step | None:
    """The training task, or None when not needed or already done with the same arguments."""
    if plan.train_args is None or plan.trained is None:
        return None
    stamp = _train_stamp(plan)
    try:
        with open(stamp, encoding="utf-8") as f:
            if json.load(f) == plan.train_args[1:] and os.path.isdir(plan.trained):
                print(f"train: reusing {plan.trained} (trained by the same command)", flush=True)
                return None
    except (OSError, ValueError):
        pass
    # The stamp is written once training has succeeded: without it (or with another command
    # in it) a quantizer left in WORK/trained is replaced, unless shards were encoded with it.
    if os.path.lexists(stamp) or os.path.lexists(plan.trained):
        started = sorted(n for n in os.listdir(plan.work)
                         if n.startswith("shard-") or n.startswith(".shard-"))
        if started:
            raise UsageError(
                f"--work {plan.work} holds shards ({', '.join(started[:3])}...) encoded with a "
                f"quantizer trained by another command than this one; use a new --work "
                f"directory (or delete that one)")
    if os.path.lexists(stamp):
        os.remove(stamp)
    return Step(
        name="train",
        argv=plan.train_args,
        out_dir=plan.trained,
        log_path=os.path.join(plan.work, "logs", "train.log"),
        attempts_path=os.path.join(run_dir, "train"),
        env=plan.env,
        resumable=False,
    )


def _train_stamp(plan: Plan) -> str:
    assert plan.trained is not None
    return plan.trained + ".args.json"


def _cause(err: BaseException) -> str:
    """The message of the exception a task raised (without Ray's traceback wrapping)."""
    import ray

    if isinstance(err, ray.exceptions.RayTaskError):
        cause = err.cause if getattr(err, "cause", None) is not None else err
        return str(cause).strip()
    return f"{type(err).__name__}: {err}".strip()


def _init_ray(address: str | None, num_cpus: float, num_gpus: float) -> None:
    import ray

    # Offline by default: no usage reporting from a local instance.
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    # A relative RAY_TMPDIR makes a local Ray time out at start-up ("The current node timed
    # out during startup"): its processes do not share the driver's working directory.
    if os.environ.get("RAY_TMPDIR"):
        os.environ["RAY_TMPDIR"] = os.path.abspath(os.environ["RAY_TMPDIR"])
    if address is None:
        ray.init(include_dashboard=False)
        total = ray.cluster_resources()
        # A local Ray never grows: a task asking for more than the machine has would wait
        # forever.
        if num_cpus > total.get("CPU", 0.0):
            raise UsageError(f"--num-cpus {num_cpus:g} per task, but this machine has "
                             f"{total.get('CPU', 0.0):g} CPUs for Ray")
        if num_gpus > total.get("GPU", 0.0):
            raise UsageError(f"--num-gpus {num_gpus:g} per task, but Ray sees "
                             f"{total.get('GPU', 0.0):g} GPUs here")
    else:
        ray.init(address=address)


def _run_tasks(steps: list[Step], a: argparse.Namespace) -> tuple[list[StepResult], list[str]]:
    """Runs the steps as Ray tasks; returns the results and the failures, in step order."""
    import ray

    task = ray.remote(
        num_cpus=a.num_cpus,
        num_gpus=a.num_gpus,
        max_retries=a.max_retries,
        retry_exceptions=True,
    )(run_step)
    refs = {task.options(name=f"img2prompt {s.name}").remote(s): s for s in steps}
    results: dict[str, StepResult] = {}
    failures: dict[str, str] = {}
    pending = list(refs)
    while pending:
        done, pending = ray.wait(pending, num_returns=1)
        for ref in done:
            step = refs[ref]
            try:
                r: StepResult = ray.get(ref)
            except Exception as e:  # noqa: BLE001 - every kind of task failure is reported
                failures[step.name] = _cause(e)
                tries = _attempts_so_far(step.attempts_path)
                print(f"{step.name}: FAILED after {tries} attempt(s):\n  "
                      + failures[step.name].replace("\n", "\n  "), flush=True)
                continue
            results[step.name] = r
            what = "already complete, skipped" if r.skipped else f"ok in {r.seconds:.1f} s"
            tries = "1 attempt" if r.attempts == 1 else f"{r.attempts} attempts"
            last = f": {r.last_line}" if r.last_line else ""
            print(f"{step.name}: {what}, {tries}, on {r.node}{last}", flush=True)
    order = [s.name for s in steps]
    return ([results[n] for n in order if n in results],
            [f"{n}: {failures[n]}" for n in order if n in failures])


def _attempts_so_far(path: str) -> str:
    try:
        with open(path, encoding="utf-8") as f:
            return str(sum(1 for _ in f))
    except OSError:
        return "?"


def _merge(plan: Plan) -> int:
    """Runs `index merge` in the driver, echoing its stderr; returns its exit status."""
    print("$ " + " ".join(plan.merge_argv), flush=True)
    env = dict(os.environ)
    env["OMP_WAIT_POLICY"] = env.get("OMP_WAIT_POLICY", "PASSIVE")
    proc = subprocess.run(plan.merge_argv, env=env, stdin=subprocess.DEVNULL, capture_output=True)
    if proc.stdout:
        sys.stdout.write(proc.stdout.decode("utf-8", errors="replace"))
    err = proc.stderr.decode("utf-8", errors="replace")
    for line in err.splitlines():
        print(f"merge: {line.rsplit(chr(13), 1)[-1]}", flush=True)
    return proc.returncode


def main(argv: Sequence[str] | None = None) -> int:
    a = _parser().parse_args(argv)
    try:
        plan = _plan(a)
    except UsageError as e:
        print(f"build_index.py: error: {e}", file=sys.stderr)
        return 2
    try:
        import ray  # noqa: F401
    except ImportError:
        print(f"build_index.py: error: Ray is not installed for {sys.executable}; "
              "scripts/setup.sh installs it into $IMG2PROMPT_HOME/ray-venv "
              "(run this script with that venv's bin/python), or `pip install ray`",
              file=sys.stderr)
        return 2
    fail_once = os.environ.get(FAIL_ONCE_ENV) or None
    if fail_once is not None:
        fail_once = os.path.abspath(fail_once)
        print(f"test hook {FAIL_ONCE_ENV}={fail_once}: the first attempt of shard "
              f"{1 if plan.shards > 1 else 0} fails", flush=True)

    os.makedirs(plan.work, exist_ok=True)
    run_id = f"{time.strftime('%Y%m%dT%H%M%S')}-{os.getpid()}"
    run_dir = os.path.join(plan.work, ".attempts", run_id)
    started = time.monotonic()
    import ray

    try:
        try:
            _init_ray(a.address, a.num_cpus, a.num_gpus)
        except UsageError as e:
            print(f"build_index.py: error: {e}", file=sys.stderr)
            return 2
        try:
            train = _train_step(plan, run_dir)
        except UsageError as e:
            print(f"build_index.py: error: {e}", file=sys.stderr)
            return 2
        if train is not None:
            print(f"train: {' '.join(train.argv)}", flush=True)
            _, failed = _run_tasks([train], a)
            if failed:
                print("build_index.py: error: training failed; no shard was started",
                      file=sys.stderr)
                return 1
            with open(_train_stamp(plan), "w", encoding="utf-8") as f:
                json.dump(train.argv[1:], f)
        steps = _shard_steps(plan, run_dir, fail_once)
        print(f"{plan.shards} shard task(s) ({a.num_cpus:g} CPU, {a.num_gpus:g} GPU each, "
              f"up to {a.max_retries} retries each) into {plan.work}", flush=True)
        results, failed = _run_tasks(steps, a)
    finally:
        # A local Ray (and its idle workers) is not needed for the merge.
        ray.shutdown()
    if failed:
        print(f"build_index.py: error: {len(failed)} of {plan.shards} shards failed "
              f"(logs in {os.path.join(plan.work, 'logs')}); re-run the same command to resume",
              file=sys.stderr)
        return 1
    shard_s = time.monotonic() - started
    code = _merge(plan)
    if code != 0:
        print(f"build_index.py: error: merge failed (exit status {code}); the shards are kept "
              f"in {plan.work}", file=sys.stderr)
        return 1
    shutil.rmtree(run_dir, ignore_errors=True)
    with contextlib.suppress(OSError):
        os.rmdir(os.path.dirname(run_dir))  # only when no other run's counters are left
    retried = sum(r.attempts - 1 for r in results)
    shards = "1 shard" if plan.shards == 1 else f"{plan.shards} shards"
    print(f"done: {plan.out} from {shards} ({retried} "
          f"{'retry' if retried == 1 else 'retries'}), shards "
          f"{shard_s:.1f} s, total {time.monotonic() - started:.1f} s", flush=True)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        # Ray has been shut down (and with it every shard's subprocess): nothing keeps running.
        print("build_index.py: interrupted; re-run the same command to resume", file=sys.stderr)
        sys.exit(130)
