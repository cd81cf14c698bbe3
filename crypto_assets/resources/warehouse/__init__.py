"""The SQL sink: the star schema loaded through pyodbc (``resource.py`` wires ``odbc``,
``dialects`` and ``load``)."""

from crypto_assets.resources.warehouse.load import WindowLoad
from crypto_assets.resources.warehouse.odbc import WarehouseError, mask_password
from crypto_assets.resources.warehouse.resource import WarehouseResource

__all__ = ["WarehouseError", "WarehouseResource", "WindowLoad", "mask_password"]
