"""The warehouse dashboard (``python -m crypto_assets.dashboard``, ``make dashboard``): a Streamlit page
over the star schema, read through pyodbc as the read-only role.

``queries`` builds each panel's SQL from the star-schema definitions and the engine's dialect,
``reader`` opens the read-only connection, ``quality`` turns per-hour counts into a status and
``app`` draws the page; nothing here writes to the warehouse.
"""
