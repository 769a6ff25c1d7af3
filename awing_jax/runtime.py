"""Process settings for training and inference on a CPU host.

:func:`use_compilation_cache` keeps compiled XLA programs on disk, so the second run of a
program with the same model and shapes skips compilation (on CPU, where 3x3 convolutions are
Winograd transforms and products, a FAN-4 training step takes over two minutes to compile and
an inference pass about twenty seconds).

:func:`retain_freed_memory` keeps the C allocator from handing freed memory back to the kernel.
XLA's CPU client allocates each step's multi-gigabyte working buffers afresh; glibc serves blocks
of that size with ``mmap`` and returns them with ``munmap`` on free (and shrinks its per-thread
heaps), so every step faults the same memory in again page by page: about 520,000 page faults
and 1.5-5 s of kernel time per FAN-4 training step at batch 4 on the 2-core development CPU, a
third of the step (BENCHMARKS.md). With ``mmap`` off, one heap and no trimming, the memory freed
by one step serves the next: the faults drop to zero once the heap has grown to the steps'
largest working set (a few steps).

The price is that the process keeps its peak heap until it exits, which is what a training or
evaluation process wants. ``train.py``, ``evaluate.py`` and ``predict.py`` call it at start-up;
library code never does, since it changes the whole process. Accelerator memory is not affected
(XLA's device allocators keep their own pools).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

# glibc's mallopt parameters (malloc.h).
M_TRIM_THRESHOLD = -1
M_MMAP_MAX = -4
M_ARENA_MAX = -8


def retain_freed_memory() -> bool:
    """Make glibc keep freed memory for reuse instead of returning it to the kernel.

    Sets ``M_MMAP_MAX`` 0 (no block gets its own mapping), ``M_ARENA_MAX`` 1 (one heap, so the
    worker threads' frees serve each other) and ``M_TRIM_THRESHOLD`` -1 (the top of the heap is
    never released; mallopt(3)). Call it before the large allocations start, i.e. first thing in
    a program.

    Returns:
      True when glibc accepted every setting, False elsewhere (not Linux, another C library),
      where nothing is changed.
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    settings = ((M_MMAP_MAX, 0), (M_ARENA_MAX, 1), (M_TRIM_THRESHOLD, -1))
    return all(mallopt(param, value) == 1 for param, value in settings)


def default_cache_dir() -> str:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "awing_jax", "xla")


def use_compilation_cache() -> str | None:
    """Turn on JAX's persistent compilation cache for this process.

    ``JAX_COMPILATION_CACHE_DIR`` decides when it is set (an empty value turns the cache off);
    otherwise compiled programs go to ``$XDG_CACHE_HOME/awing_jax/xla`` (``~/.cache/...``).
    Call it before the first compilation.

    Returns:
      The cache directory in use, or None when the cache is off.
    """
    import jax

    if "JAX_COMPILATION_CACHE_DIR" in os.environ:
        return os.environ["JAX_COMPILATION_CACHE_DIR"] or None
    directory = default_cache_dir()
    jax.config.update("jax_compilation_cache_dir", directory)
    return directory
