"""The asset graph, one module per layer."""

import warnings

from dagster import BetaWarning

# Single-run backfills and lookback partition mappings are used on purpose; their beta notices
# would otherwise print on every load of the code location.
warnings.filterwarnings("ignore", category=BetaWarning)
