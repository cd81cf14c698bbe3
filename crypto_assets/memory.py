"""Memory a long run hands back between slices, so its peak stays that of one slice.

Measured on a 744-hour backfill (1,000 coins): Arrow's default pool (mimalloc) kept what each
slice had freed, and glibc's malloc kept free pages in its arenas, so Python's peak grew with
the window (747 MB against 470 MB for 24 hours) while what was in use stayed flat. With Arrow on
the system allocator (chosen in ``crypto_assets/__init__.py``: it must precede pyarrow's import)
and glibc's free pages returned after every committed slice and Bronze part, it peaked at 527 MB.

delta-rs allocates with its own jemalloc, which keeps freed pages for 10 s by default: on the same
backfill Python held 457 MB in Bronze and 516 MB at its peak, against 383 and 490 MB with them
returned at once (also set in ``crypto_assets/__init__.py``; it has no call to trim it later).

glibc gives each new thread a malloc arena of its own, up to eight per core, and what a thread
frees is reused only by the threads of its arena. On the same backfill Python peaked at 497 MB
with those arenas, against 443 MB with two shared by every thread (``limit_arenas``, called by
``crypto_assets/__init__.py``).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os

# Arenas for this process's threads: one per core of the machines the figures were taken on.
ARENAS = 2
_M_ARENA_MAX = -8  # mallopt's parameter number in glibc's malloc.h


def _glibc():
    """The C library, looked up once (``find_library`` runs ``ldconfig``), or None if not found."""
    name = ctypes.util.find_library("c")
    try:
        return ctypes.CDLL(name) if name else None
    except OSError:
        return None


_LIBC = _glibc()
# glibc's malloc functions, or None where the C library has none (musl, macOS)
_MALLOC_TRIM = getattr(_LIBC, "malloc_trim", None)
_MALLOPT = getattr(_LIBC, "mallopt", None)


def limit_arenas() -> None:
    """At most ARENAS malloc arenas for the threads this process starts from now on, unless
    MALLOC_ARENA_MAX says otherwise (glibc read it when the process started)."""
    if _MALLOPT is not None and "MALLOC_ARENA_MAX" not in os.environ:
        _MALLOPT(_M_ARENA_MAX, ARENAS)


def release_free_memory() -> None:
    """Return the free pages of the C heap to the system: called once a slice is committed and
    its rows dropped. A few milliseconds; nothing where libc is not glibc."""
    if _MALLOC_TRIM is not None:
        _MALLOC_TRIM(0)
