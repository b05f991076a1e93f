"""Webhooks to the application (docs/webhooks.md): Standard Webhooks signatures, an outbox
table written by the store in the same transaction as each room change, and a dispatcher that
delivers it at least once, in order per room and endpoint.

Modules, one noun each: ``settings`` (parsing ``LIVEHUB_WEBHOOK_*``), ``signing``,
``schedule`` (the retry schedule, a pure function), ``queue`` (the outbox port),
``sqlite`` and ``postgres`` (its embedded and cluster adapters), ``dispatcher`` (the
background sender), ``presence`` (host and viewer-count events from signaling), ``api`` (admin
endpoints), ``metrics``, and ``setup`` (wiring into the app). This package's ``__init__``
imports nothing, so ``livehub.config`` can import ``settings`` without pulling in aiohttp.
"""
