"""Memory a long run hands back between slices, so its peak stays that of one slice.

Measured on a 744-hour backfill (1,000 coins): Arrow's default pool (mimalloc) kept what each
slice had freed, and glibc's malloc kept free pages in its arenas, so Python's peak grew with
the window (747 MB against 470 MB for 24 hours) while what was in use stayed flat. With Arrow on
the system allocator (chosen in ``crypto_assets/__init__.py``: it must precede pyarrow's import)
and glibc's free pages returned after every committed slice and Bronze part, it peaked at 527 MB.

delta-rs allocates with its own jemalloc, which keeps freed pages for 10 s by default: on the same
backfill Python held 457 MB in Bronze and 516 MB at its peak, against 383 and 490 MB with them
returned at once (also set in ``crypto_assets/__init__.py``; it has no call to trim it later).
"""

from __future__ import annotations

import ctypes
import ctypes.util


def _glibc_trim():
    """glibc's ``malloc_trim``, or None where the C library has none (musl, macOS)."""
    name = ctypes.util.find_library("c")
    try:
        return ctypes.CDLL(name).malloc_trim if name else None
    except (OSError, AttributeError):
        return None


_MALLOC_TRIM = _glibc_trim()


def release_free_memory() -> None:
    """Return the free pages of the C heap to the system: called once a slice is committed and
    its rows dropped. A few milliseconds; nothing where libc is not glibc."""
    if _MALLOC_TRIM is not None:
        _MALLOC_TRIM(0)
