"""crypto_assets: CoinGecko market data through a Delta lakehouse into a SQL star schema.

Two native allocators read their settings from the environment once, when their library loads, so
the package sets them before any of its modules imports pyarrow or deltalake (``memory.py`` has
the measurements); a value already set wins:

* Arrow's C++ allocator: the system one, which hands a long run's freed slices back;
* delta-rs's jemalloc (``_RJEM_MALLOC_CONF``): freed pages go back at once instead of after 10 s,
  which over a run of many commits kept tens of MB per step.

glibc's malloc reads its own settings when the process starts; the number of its arenas is set here
(``memory.limit_arenas``), before the threads that would each get one.
"""

import os

from crypto_assets import memory

os.environ.setdefault("ARROW_DEFAULT_MEMORY_POOL", "system")
os.environ.setdefault("_RJEM_MALLOC_CONF", "dirty_decay_ms:0,muzzy_decay_ms:0")

memory.limit_arenas()
