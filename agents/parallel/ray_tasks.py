"""A generic Ray task runner: one Ray task per call of a function, results handed back as they finish.

:func:`run_tasks` runs ``fn(*args)`` for every :class:`RayCall` as a Ray task and passes each result (or a
:class:`TaskFailure`) to ``on_result`` in this process as soon as ``ray.wait`` returns it. It knows nothing of
episodes: the evaluation harness (:mod:`prunegym.agents.evaluation.harness`) gives it ``run_episode`` and
its arguments, and turns failures into failed rows; any other picklable, importable function works too.

Torch threads: on CPU an episode's row does not depend on the process it runs in, but it can depend on
torch's thread count (float sums are split differently: Fashion-MNIST-MLP accuracies move in the third
decimal between one and two threads; the tiny synthetic runs of the tests do not). A Ray episode runs with
``int(cpus_per_run)`` threads (default 1); the sequential path runs with this process's threads unless
``cpus_per_run`` is given, when it uses that many for its episodes and then restores the setting. So a
sequential run and a Ray run with the same ``cpus_per_run`` give the same rows, and Ray runs agree with
each other whatever the number of workers. One thread per episode also avoids oversubscribing the cores.

Where the episodes run (:class:`RayOptions`):

* ``workers=N``: a local Ray instance with ``N * cpus_per_run`` CPUs (and this machine's GPUs when
  ``gpus_per_run > 0``), started here and shut down at the end; at most ``N`` episodes run at once;
* ``address=ADDR``: join a running cluster (``"auto"`` for one started with ``ray start`` on this
  machine, or ``host:port``; a ``ray://`` client address needs ``ray[client]``); at the end this driver
  disconnects, the cluster keeps running. The nodes
  need prunegym installed and their own data (``PRUNEGYM_DATA`` on the nodes, or ``data_root=`` in the env
  kwargs); ``workers`` then only caps the number of episodes in flight;
* a Ray already initialised in this process (``ray.init`` by the caller) is used as it is and left running.

An ``address`` is checked before anything runs (:func:`check_ray_address`): ``auto`` must find a running
cluster, and the port of ``host:port`` (or ``ray://host:port``) must accept a TCP connection and answer an
HTTP/2 (gRPC, what Ray's GCS and client server speak) handshake, each within 5 s, and a GCS address must
answer Ray's GCS client; otherwise :class:`RayUnreachable` (a ``ValueError``, one line: the address,
``ray start --head`` or dropping the option) is raised at once instead of Ray retrying its connection for minutes.

Each task declares ``num_cpus=cpus_per_run`` (default 1) and ``num_gpus=gpus_per_run`` (``0.25`` lets four
tasks share a GPU) and sets torch's thread count to its whole CPUs. Every distinct argument object is put in
Ray's object store once (a policy spec shared by many episodes travels once); an argument that cannot be
pickled is a one-line ``ValueError`` naming the call.

Failures: a call that raises is run once more (application-level retry); a worker that dies (a crash, the
OOM killer, a lost node) is retried once by Ray (``max_retries=1``). A call that still fails reaches
``on_result`` as a :class:`TaskFailure` (``error`` = ``"<Type>: <message>"``, its traceback logged), and the
other calls go on.
"""

from __future__ import annotations

import logging
import math
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch
from tqdm.auto import tqdm

from .ray_address import RayUnreachable, check_ray_address, connect_ray

__all__ = [
    "EXCEPTION_RETRIES",
    "RAY_INSTALL_HINT",
    "RAY_MAX_RETRIES",
    "RayCall",
    "RayOptions",
    "RayUnavailable",
    "RayUnreachable",
    "TaskFailure",
    "check_ray_address",
    "connect_ray",
    "error_text",
    "import_ray",
    "ray_options_of",
    "ray_session",
    "run_tasks",
    "torch_threads",
]

log = logging.getLogger(__name__)

RAY_INSTALL_HINT = 'pip install -e ".[ray]"'
RAY_MAX_RETRIES = 1  # Ray re-runs a task whose worker died this many times
EXCEPTION_RETRIES = 1  # run_tasks re-runs a call that raised this many times


class RayUnavailable(ImportError):
    """Parallel runs were asked for but Ray is not installed."""


def import_ray():
    """``import ray``, or :class:`RayUnavailable` with the install command."""
    try:
        import ray
    except ImportError as exc:
        raise RayUnavailable(
            f"parallel runs need Ray, which is not installed; install it with {RAY_INSTALL_HINT}"
        ) from exc
    return ray


@dataclass(frozen=True)
class RayOptions:
    """Where and with what resources episodes run (see the module docstring). ``enabled``: ``workers`` or
    ``address`` is set (otherwise the sequential path runs). ``cpus_per_run``: ``None`` is 1 on Ray and
    "leave torch's thread count alone" in the sequential path. A command builds one and passes it whole
    (harness, scheduler, ``train_agent``, ``make_vec_env``, :class:`~.ray_vec_env.RayVecEnv`)."""

    workers: int | None = None
    address: str | None = None
    cpus_per_run: float | None = None
    gpus_per_run: float = 0.0
    # what validate() found: None not run yet, False valid without Ray, True valid for a Ray run
    _checked: bool | None = field(default=None, init=False, repr=False, compare=False)

    @property
    def enabled(self) -> bool:
        return self.workers is not None or bool(self.address)

    @property
    def cpus(self) -> float:
        """CPUs a Ray episode reserves."""
        return 1.0 if self.cpus_per_run is None else float(self.cpus_per_run)

    @property
    def threads(self) -> int:
        """torch threads of one episode: its whole CPUs, at least one."""
        return max(1, int(self.cpus))

    def validate(self, ray_run: bool = False) -> RayOptions:
        """Check the values (``ValueError``) and, when enabled or ``ray_run`` (a Ray run whatever ``workers``
        says: ``vec_env="ray"``), that Ray imports (:class:`RayUnavailable`); once per object."""
        on = self.enabled or ray_run
        if self._checked or (self._checked is False and not on):
            return self
        w = self.workers
        if w is not None and (isinstance(w, bool) or not isinstance(w, int) or w < 1):
            raise ValueError(f"workers={w!r} must be a positive int")
        if self.address is not None and (not isinstance(self.address, str) or not self.address):
            raise ValueError(f"ray_address={self.address!r} must be a non-empty string such as 'auto' or 'host:6379'")
        cpus = 1.0 if self.cpus_per_run is None else self.cpus_per_run
        for name, value, positive in (("cpus_per_run", cpus, True), ("gpus_per_run", self.gpus_per_run, False)):
            ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
            if not ok or (value <= 0 if positive else value < 0):
                raise ValueError(f"{name}={value!r} must be a number {'> 0' if positive else '>= 0'}")
        if not on and self.gpus_per_run != 0.0:
            raise ValueError("gpus_per_run applies to Ray runs only: pass workers=N or ray_address=ADDR")
        if on:
            import_ray()
        if self.address:
            check_ray_address(self.address)
        object.__setattr__(self, "_checked", on)
        return self


def ray_options_of(
    ray: RayOptions | None,
    workers: int | None = None,
    ray_address: str | None = None,
    cpus_per_run: float | None = None,
    gpus_per_run: float = 0.0,
) -> RayOptions:
    """``ray``, or (``None``) the options of the public API's keywords, ``ray_address`` as ``address``; not
    both."""
    if ray is None:
        return RayOptions(workers, ray_address, cpus_per_run, gpus_per_run)
    if not isinstance(ray, RayOptions):
        raise ValueError(f"ray={ray!r} must be a RayOptions or None")
    loose = dict(workers=workers, ray_address=ray_address, cpus_per_run=cpus_per_run)
    given = [f"{k}={v!r}" for k, v in loose.items() if v is not None]
    given += [f"gpus_per_run={gpus_per_run!r}"] if gpus_per_run != 0.0 else []
    if given:
        raise ValueError(f"ray={ray!r} and {', '.join(given)} given together; pass ray= or the keywords, not both")
    return ray


@contextmanager
def ray_session(options: RayOptions) -> Iterator[Any]:
    """The ``ray`` module, initialised as ``options`` say for the duration of the block (see the module
    docstring: a local instance is shut down at the end, a joined cluster only disconnected from, a Ray the
    caller initialised left alone)."""
    ray = import_ray()
    if ray.is_initialized():
        _check_resources(ray, options, local=False)
        yield ray
        return
    if options.address:
        connect_ray(ray, options.address)
    else:
        workers = options.workers or 1
        ray.init(
            num_cpus=max(1, math.ceil(workers * options.cpus)),
            num_gpus=None if options.gpus_per_run > 0 else 0,  # None: Ray counts this machine's GPUs
            include_dashboard=False,
            logging_level=logging.WARNING,
        )
    try:
        _check_resources(ray, options, local=not options.address)
        yield ray
    finally:
        ray.shutdown()


def _check_resources(ray, options: RayOptions, local: bool) -> None:
    """A task that asks for more than the cluster has waits forever: say so instead."""
    have = ray.cluster_resources()
    for key, need in (("CPU", options.cpus), ("GPU", options.gpus_per_run)):
        if need > have.get(key, 0.0):
            msg = f"each run asks for {need:g} {key}(s) but the Ray cluster has {have.get(key, 0.0):g}" + (
                "" if key == "CPU" else "; use --gpus-per-run 0 on a machine without GPU"
            )
            if local:
                raise ValueError(msg)
            log.warning("%s; the runs wait until the cluster grows", msg)


@contextmanager
def torch_threads(n: int | None) -> Iterator[None]:
    """torch's intra-op thread count set to ``n`` for the block and restored after (``None``: untouched)."""
    if n is None:
        yield
        return

    before = torch.get_num_threads()
    torch.set_num_threads(int(n))
    try:
        yield
    finally:
        torch.set_num_threads(before)


@dataclass
class TaskFailure:
    """What a call gives when it raised (exceptions stay in the worker: some do not pickle)."""

    error: str
    traceback: str
    wall_clock_s: float


@dataclass
class RayCall:
    """One task: ``fn(*args)``, shown as ``label`` in Ray and in the log."""

    args: tuple
    label: str


def _one_line(text: str, limit: int = 500) -> str:
    line = " ".join(part.strip() for part in str(text).splitlines() if part.strip())
    return line if len(line) <= limit else line[: limit - 3] + "..."


def error_text(exc: BaseException) -> str:
    """``"<Type>: <message on one line>"``."""
    return f"{type(exc).__name__}: {_one_line(str(exc))}" if str(exc) else type(exc).__name__


def _call(fn: Callable[..., Any], threads: int, *args: Any) -> Any:
    """Body of a Ray task: ``fn(*args)`` with ``threads`` torch threads; a raised exception becomes a
    :class:`TaskFailure`."""
    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)
    start = time.perf_counter()
    try:
        return fn(*args)
    except Exception as exc:
        return TaskFailure(error_text(exc), traceback.format_exc(), time.perf_counter() - start)


def _put_args(ray, calls: Sequence[RayCall]) -> list[list[Any]]:
    """The calls' arguments with every distinct non-trivial object put in the object store once."""
    refs: dict[int, Any] = {}
    out = []
    for c in calls:
        args = []
        for a in c.args:
            if a is None or isinstance(a, (bool, int, float, str)):
                args.append(a)
                continue
            if id(a) not in refs:
                try:
                    refs[id(a)] = ray.put(a)
                except Exception as exc:
                    raise ValueError(
                        f"an argument of {c.label} cannot be sent to Ray workers ({error_text(exc)}); "
                        "save it and pass its path, or run without workers"
                    ) from exc
            args.append(refs[id(a)])
        out.append(args)
    return out


def _outcome(ray, ref: Any, attempt: int) -> tuple[Any, bool]:
    """A finished task's return value (or a :class:`TaskFailure`) and whether a failure may run again: one the
    task raised, up to :data:`EXCEPTION_RETRIES` times; not a lost worker or node, which Ray has retried already."""
    retry = attempt <= EXCEPTION_RETRIES
    try:
        result = ray.get(ref)
    except ray.exceptions.RayTaskError as exc:  # the task itself failed (e.g. unpickling its args)
        result = TaskFailure(error_text(exc.cause if exc.cause is not None else exc), str(exc), float("nan"))
    except ray.exceptions.RayError as exc:  # worker or node died, and again on Ray's retry
        result = TaskFailure(error_text(exc), f"(Ray retried it {RAY_MAX_RETRIES} time(s))", float("nan"))
        retry = False
    return result, retry


def run_tasks(
    fn: Callable[..., Any],
    calls: Sequence[RayCall],
    on_result: Callable[[int, Any], None],
    options: RayOptions,
    *,
    progress: bool = False,
    unit: str = "task",
) -> None:
    """Run ``fn(*call.args)`` for every call as a Ray task (see the module docstring); ``on_result(i, value)``
    gets call ``i``'s return value, or a :class:`TaskFailure`, in this process as it arrives."""
    options.validate()
    if not options.enabled:
        raise ValueError("run_tasks needs workers=N or address=ADDR")
    if not calls:
        return
    with ray_session(options) as ray:
        args = _put_args(ray, calls)
        remote = ray.remote(
            num_cpus=options.cpus, num_gpus=options.gpus_per_run, max_retries=RAY_MAX_RETRIES, retry_exceptions=False
        )(_call)
        cap = options.workers or len(calls)
        queue = list(range(len(calls)))[::-1]  # pop() takes the first call
        pending: dict[Any, tuple[int, int]] = {}  # ref -> (call index, attempt)

        def submit(i: int, attempt: int) -> None:
            ref = remote.options(name=calls[i].label).remote(fn, options.threads, *args[i])
            pending[ref] = (i, attempt)

        bar = tqdm(total=len(calls), desc=f"{unit}s", unit=unit, disable=not progress)
        try:
            while queue or pending:
                while queue and len(pending) < cap:
                    submit(queue.pop(), 1)
                ready, _ = ray.wait(list(pending), num_returns=1)
                for ref in ready:
                    i, attempt = pending.pop(ref)
                    result, retry = _outcome(ray, ref, attempt)
                    if isinstance(result, TaskFailure):
                        log.warning(
                            "%s failed (attempt %d)%s: %s\n%s",
                            calls[i].label,
                            attempt,
                            ", running it again" if retry else "",
                            result.error,
                            result.traceback,
                        )
                        if retry:
                            submit(i, attempt + 1)
                            continue
                    on_result(i, result)
                    bar.set_postfix_str(f"{calls[i].label} {'FAILED' if isinstance(result, TaskFailure) else 'done'}")
                    bar.update()
        except BaseException:
            for ref in pending:  # Ctrl-C or a failing sink: stop what still runs on a joined cluster
                try:
                    ray.cancel(ref, force=True)
                except Exception:
                    pass
            raise
        finally:
            bar.close()
