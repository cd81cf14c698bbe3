"""crypto_assets: CoinGecko market data through a Delta lakehouse into a SQL star schema.

Arrow reads its C++ allocator from the environment once, when pyarrow loads, so the package
chooses it before any of its modules imports pyarrow: the system allocator, which hands a long
run's freed slices back (``memory.py`` has the measurement). A value already set wins.
"""

import os

os.environ.setdefault("ARROW_DEFAULT_MEMORY_POOL", "system")
