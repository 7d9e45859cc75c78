"""How the course measures cost on this machine, for the resolution sweep and both benchmarks.

- **Isolation.** :func:`isolated` runs one measurement in a fresh child process, so that its peak
  memory is its own and a measurement that runs out of memory or time can be stopped without
  harming the caller. Children are started by a ``forkserver`` that has imported PyTorch once
  (a spawned interpreter would import it again for every child, seconds each); like spawned
  children, they share nothing with the caller: no memory, no CUDA context. Where there is no
  forkserver (Windows), they are spawned. A child that dies, or does not answer within its
  time limit (it is then killed), raises :class:`IsolationError` in the caller, never a hang.
- **Peak memory.** :class:`PeakMemory`: the growth over what was in use when it started. On CUDA,
  ``torch.cuda.max_memory_allocated`` minus ``torch.cuda.memory_allocated`` at the start; on the
  CPU, the growth of the process's peak resident set size (``VmHWM``, reset through
  ``/proc/self/clear_refs`` at the start) over its resident size then; where there is no ``/proc``
  (macOS), the growth of ``ru_maxrss``, which cannot be reset. :func:`return_freed_memory`
  makes the resident set follow the live tensors more closely (glibc).
- **Time.** :func:`seconds_per_call` times with ``torch.utils.benchmark.Timer``, which warms up
  first, keeps the thread count fixed and waits for the accelerator's queued work before it
  reads the clock; :func:`seconds_once` times a single call with the same clock.
"""

from __future__ import annotations

import ctypes
import multiprocessing as mp
import os
import platform
import queue as queue_lib
import resource
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch.utils.benchmark import Timer
from torch.utils.benchmark.utils.timer import timer as synced_clock

__all__ = [
    "IsolationError",
    "isolated",
    "isolated_row",
    "PeakMemory",
    "return_freed_memory",
    "memory_limit",
    "seconds_per_call",
    "seconds_once",
    "device_name",
]


# ----------------------------------------------------------------------------------------------
# Isolation


class IsolationError(RuntimeError):
    """A measurement in a child process gave no result.

    Attributes:
        reason: ``"timeout"`` (killed after its time limit), ``"killed"`` (SIGKILL from outside: the
            kernel's out-of-memory killer, most likely), ``"exited"`` (died with another exit code)
            or ``"raised"`` (the measurement raised an exception, named in the message).
    """

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


# What the forkserver imports once for all its children: PyTorch, and the modules whose functions the
# package measures (the sweep's points are the most numerous children).
PRELOAD = ("torch", "cvt_edu.models", "cvt_edu.cost.sweep")


def _context(module: str) -> mp.context.BaseContext:
    """A forkserver that has imported :data:`PRELOAD` and ``module`` (the first call's, as the server starts once), else spawn."""
    try:
        ctx = mp.get_context("forkserver")
    except ValueError:  # pragma: no cover - platforms without forkserver
        return mp.get_context("spawn")
    ctx.set_forkserver_preload([*PRELOAD, __name__, module])
    return ctx


def _child(results: Any, fn: Callable[..., Any], args: tuple, kwargs: dict[str, Any]) -> None:
    try:
        results.put(("ok", fn(*args, **kwargs)))
    except Exception as e:  # noqa: BLE001 - every failure is reported to the parent, which raises it
        results.put(("raised", f"{type(e).__name__}: {e}"))


def isolated(fn: Callable[..., Any], *args: Any, timeout_s: float | None = None, **kwargs: Any) -> Any:
    """``fn(*args, **kwargs)`` in a fresh child process; its return value (which must pickle).

    Args:
        fn: a module-level function (the child imports it by name).
        *args, **kwargs: its arguments (they must pickle).
        timeout_s: a child that has not answered after this many seconds is killed; ``None``: no limit.

    Raises:
        IsolationError: the child timed out, was killed, exited without answering, or ``fn`` raised
            (the message names which, and the exception or exit code).
    """
    ctx = _context(getattr(fn, "__module__", None) or __name__)
    results = ctx.Queue()
    proc = ctx.Process(target=_child, args=(results, fn, args, kwargs), daemon=True)
    proc.start()
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    answer, timed_out = None, False
    try:
        while answer is None:  # wait for the answer, the child's death, or the deadline
            try:
                answer = results.get(timeout=0.2)
            except queue_lib.Empty:
                if not proc.is_alive():
                    try:  # it may have answered just before exiting (then its answer is already in the pipe)
                        answer = results.get(timeout=0.5)
                    except queue_lib.Empty:
                        break
                elif deadline is not None and time.monotonic() > deadline:
                    timed_out = True
                    break
    finally:  # also when the caller is interrupted: no child outlives the call
        if answer is None and proc.is_alive():
            proc.kill()
        proc.join()
        results.close()
    name = getattr(fn, "__qualname__", repr(fn))
    if timed_out:
        raise IsolationError(f"{name} gave no result within {timeout_s:g} s; its child process was killed", "timeout")
    if answer is None:
        if proc.exitcode == -9:
            raise IsolationError(f"{name}: its child process was killed (SIGKILL; out of memory, most likely)", "killed")
        raise IsolationError(f"{name}: its child process exited with code {proc.exitcode} without a result", "exited")
    status, value = answer
    if status == "raised":
        raise IsolationError(f"{name} raised {value}", "raised")
    return value


def isolated_row(fn: Callable[..., dict[str, Any]], *args: Any, timeout_s: float | None = None, **kwargs: Any) -> dict[str, Any]:
    """:func:`isolated` for a measurement that returns a row of a table: a child that gave no result
    gives the row ``{"error": message}`` instead of raising, so that the other rows are still measured."""
    try:
        return isolated(fn, *args, timeout_s=timeout_s, **kwargs)
    except IsolationError as e:
        return {"error": str(e)}


# ----------------------------------------------------------------------------------------------
# Peak memory


def _proc_status_kib(field: str) -> int | None:
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def _reset_peak_rss() -> bool:
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as f:
            f.write("5")  # resets VmHWM, the peak resident set size (Linux >= 4.0)
        return True
    except OSError:
        return False


def return_freed_memory() -> None:
    """glibc: serve every allocation of 64 KiB or more with ``mmap``, so a freed tensor leaves the resident set at once.

    Without it, glibc keeps freed blocks of up to 32 MiB in its heap, and a measurement's resident
    set would include what earlier work freed. The price is a page fault per new large block, so
    call it only where memory, not speed, is the point. No effect outside glibc.
    """
    try:
        ctypes.CDLL("libc.so.6").mallopt(-3, 64 * 1024)  # M_MMAP_THRESHOLD = -3
    except (OSError, AttributeError):
        pass


@contextmanager
def memory_limit(device: torch.device | str, mib: float | None) -> Iterator[None]:
    """Let the block add at most ``mib`` MiB of memory; beyond it an allocation fails (``MemoryError``,
    ``torch.OutOfMemoryError`` or the CPU allocator's ``RuntimeError``).

    On the CPU the limit is on the address space (``RLIMIT_AS``: what is mapped now plus ``mib``),
    lifted again when the block ends, so that reporting a result has memory; on CUDA it is the
    caching allocator's share of the GPU (``torch.cuda.set_per_process_memory_fraction``), which
    stays set: use it in a child process of :func:`isolated`. ``mib=None``: no limit.
    """
    device = torch.device(device)
    address_space = resource.getrlimit(resource.RLIMIT_AS)
    if mib is not None and device.type == "cuda":
        total = torch.cuda.get_device_properties(device).total_memory
        torch.cuda.set_per_process_memory_fraction(min(1.0, mib * 2**20 / total), device)
    mapped = _proc_status_kib("VmSize") if mib is not None and device.type == "cpu" else None
    if mapped is not None:
        resource.setrlimit(resource.RLIMIT_AS, (mapped * 1024 + int(mib * 2**20), address_space[1]))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_AS, address_space)


class PeakMemory:
    """Peak memory growth over a baseline, in MiB: CUDA's allocator, or the CPU process's resident set.

    Call :meth:`start` just before the work to measure, and :meth:`mib` after it.

    Args:
        device: the device the work runs on.

    Attributes:
        resettable: whether the peak can be reset at :meth:`start` (always on CUDA; on the CPU where
            there is ``/proc``); if not, the CPU reading is the growth of ``ru_maxrss`` since
            :meth:`start`, which only shows a peak above the process's earlier one.
    """

    def __init__(self, device: torch.device | str) -> None:
        self.device = torch.device(device)
        self.resettable = self.device.type == "cuda" or _proc_status_kib("VmHWM") is not None
        self.before = 0

    def start(self) -> None:
        """Take the baseline (and reset the peak) now."""
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self.before = torch.cuda.memory_allocated(self.device)
        elif self.resettable and _reset_peak_rss():
            self.before = _proc_status_kib("VmRSS") * 1024
        else:
            self.resettable = False
            self.before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux

    def mib(self) -> float:
        """The peak since :meth:`start`, above the baseline, in MiB (0 if it never rose above it)."""
        if self.device.type == "cuda":
            now = torch.cuda.max_memory_allocated(self.device)
        elif self.resettable:
            now = _proc_status_kib("VmHWM") * 1024
        else:
            now = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        return max(0, now - self.before) / 2**20


# ----------------------------------------------------------------------------------------------
# Time


def seconds_per_call(fn: Callable[[], Any], steps: int) -> float:
    """Mean wall time of one call of ``fn`` over ``steps`` timed calls, in seconds.

    Timed with ``torch.utils.benchmark.Timer.timeit``, which first runs ``fn`` ``max(steps // 100, 2)``
    more times untimed, waits for the accelerator's queued work before reading the clock, and
    runs with this process's thread count (``torch.get_num_threads()``).

    Raises:
        ValueError: if ``steps`` < 1.
    """
    if steps < 1:
        raise ValueError(f"steps must be at least 1, got {steps}")
    timer = Timer(stmt="fn()", globals={"fn": fn}, num_threads=torch.get_num_threads())
    return timer.timeit(steps).mean


def seconds_once(fn: Callable[[], Any]) -> float:
    """Wall time of one call of ``fn``, in seconds, queued accelerator work included (the clock of
    ``torch.utils.benchmark``); for first calls, whose one-off costs :func:`seconds_per_call` warms away."""
    start = synced_clock()
    fn()
    return synced_clock() - start


def device_name(device: torch.device | str) -> str:
    """What ran a measurement: the GPU's name, ``cpu (machine, cores, torch threads)``, or the device's type (``mps``)."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    if device.type == "cpu":
        return f"cpu ({platform.processor() or platform.machine()}, {os.cpu_count()} cores, {torch.get_num_threads()} threads)"
    return device.type
