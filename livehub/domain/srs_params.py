"""What livehub reads from SRS's callbacks: the hook event, the ``param`` query in its shapes,
the publish token in it, and the stream name behind a play URL."""

from __future__ import annotations

import dataclasses
from urllib.parse import parse_qs

_PLAY_EXTENSIONS = (".flv", ".m3u8", ".ts", ".mp4", ".aac", ".mp3")
TOKEN_PARAM_NAMES = ("secret", "token")

#: callbacks that drive the lifecycle; the others SRS may send are acknowledged and ignored
LIFECYCLE_ACTIONS = ("on_publish", "on_unpublish", "on_play", "on_stop")
PASSIVE_ACTIONS = ("on_connect", "on_close", "on_dvr", "on_hls")
HOOK_ACTIONS = LIFECYCLE_ACTIONS + PASSIVE_ACTIONS


@dataclasses.dataclass(frozen=True, kw_only=True)
class HookEvent:
    """The parts of an SRS callback body that drive the lifecycle."""

    action: str
    client_id: str
    app: str = ""
    stream: str = ""
    param: str = ""
    stream_url: str = ""
    service_id: str | None = None
    #: the SRS that sent it (``server_id``, persistent per SRS container; absent before 4.0.185)
    server_id: str | None = None


def parse_param(param: str) -> dict[str, str]:
    """Parse SRS's ``param`` in any of its shapes: ``?k=v``, ``k=v`` (SRT) or WHIP's raw query.

    A ``#fragment`` is stripped, and every ``?`` separates fields as ``&`` does: an RTMP
    client with a query in its tcUrl (OBS's server ``rtmp://host/live?secret=T``) gets
    ``?secret=T?secret=T`` from SRS 5 and 6 (the tcUrl's query twice, after the stream's own:
    ``?k=stream?k=tc?k=tc``). The first value of each key wins: the stream's own query.
    """
    text = param.split("#", 1)[0].replace("?", "&")
    parsed = parse_qs(text, keep_blank_values=True)
    return {key: values[0] for key, values in parsed.items()}


def param_token(param: str) -> str | None:
    fields = parse_param(param)
    for name in TOKEN_PARAM_NAMES:
        if fields.get(name):
            return fields[name]
    return None


def strip_play_extension(stream: str) -> str:
    for ext in _PLAY_EXTENSIONS:
        if stream.endswith(ext):
            return stream[: -len(ext)]
    return stream


def stream_of(app: str, stream: str, stream_url: str = "") -> tuple[str, str]:
    """``(app, stream key)`` of a callback; the URL stands in when both fields are empty."""
    if not app and not stream and stream_url:
        parts = stream_url.strip("/").split("/")
        if len(parts) >= 2:
            app, stream = parts[-2], parts[-1]
    return app, strip_play_extension(stream)
