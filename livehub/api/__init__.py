"""The HTTP and WebSocket boundary: aiohttp handlers, marshmallow schemas, middlewares."""
