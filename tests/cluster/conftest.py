"""The cluster tests' engines (fixtures ``postgres``, ``redis_server``, ``pg_url``,
``redis_prefix``) are in ``tests/conftest.py``: the store behaviour suite runs on PostgreSQL too."""
