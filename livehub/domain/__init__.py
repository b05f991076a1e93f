"""Plain-Python domain: rooms and their lifecycle, the signaling hub and protocol, errors.

Nothing here imports aiohttp or marshmallow (a ruff banned-import rule keeps it so); the
``livehub.api`` package adapts it to HTTP and WebSockets.
"""
