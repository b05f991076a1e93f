"""The recordings directory on a file system (:class:`livehub.domain.recordings.RecordingFiles`).

SRS names a DVR file relative to its working directory (``cwd`` and ``file`` of ``on_dvr``);
compose mounts the directory at the same path in both containers, so the absolute path SRS
reports is the one livehub sees. Only files that resolve (symlinks and ``..`` followed) to a
regular file strictly inside ``LIVEHUB_RECORDINGS_DIR`` are accepted; livehub stores the path
relative to the directory, so every node of a cluster that mounts the same share at any path
serves it.

The duration is read from the MP4 itself (the ``mvhd`` box of its ``moov``: SRS writes it at the
end of the file), reading box headers only, never the media.
"""

from __future__ import annotations

import asyncio
import logging
import os
import struct
from pathlib import Path
from typing import BinaryIO

from livehub.domain.recordings import FileInfo

log = logging.getLogger(__name__)

#: boxes walked at most per level (a valid MP4 has a handful)
_MAX_BOXES = 10_000


class LocalRecordingFiles:
    def __init__(self, directory: str) -> None:
        self.directory = Path(directory).resolve()

    def resolve(self, cwd: str, file: str) -> str | None:
        if not file or "\x00" in file or "\x00" in cwd:
            return None
        candidate = Path(file)
        if not candidate.is_absolute():
            if not cwd or not Path(cwd).is_absolute():
                return None
            candidate = Path(cwd) / candidate
        try:
            real = candidate.resolve(strict=True)
        except (OSError, RuntimeError):  # missing, a symlink loop
            return None
        if not real.is_relative_to(self.directory) or real == self.directory:
            return None
        if not real.is_file():
            return None
        return real.relative_to(self.directory).as_posix()

    def absolute(self, path: str) -> Path:
        return self.directory / path

    async def inspect(self, path: str) -> FileInfo | None:
        return await asyncio.to_thread(self._inspect, self.absolute(path))

    @staticmethod
    def _inspect(file: Path) -> FileInfo | None:
        try:
            with file.open("rb") as stream:
                size = os.fstat(stream.fileno()).st_size
                return FileInfo(size_bytes=size, duration_ms=mp4_duration_ms(stream, size))
        except FileNotFoundError:
            return None
        except OSError:  # unreadable: keep it, with no duration
            log.warning("recording %s could not be read", file, exc_info=True)
            return FileInfo(size_bytes=file.stat().st_size, duration_ms=None)

    async def delete(self, path: str) -> bool:
        file = self.absolute(path)
        try:
            await asyncio.to_thread(file.unlink)
        except FileNotFoundError:
            return False
        return True


def _boxes(stream: BinaryIO, start: int, end: int) -> list[tuple[bytes, int, int]]:
    """The ``(type, payload offset, payload end)`` of the boxes in ``[start, end)``."""
    found: list[tuple[bytes, int, int]] = []
    offset = start
    while offset + 8 <= end and len(found) < _MAX_BOXES:
        stream.seek(offset)
        header = stream.read(8)
        if len(header) < 8:
            break
        size, kind = struct.unpack(">I4s", header)
        payload = offset + 8
        if size == 1:  # 64-bit size follows
            large = stream.read(8)
            if len(large) < 8:
                break
            (size,) = struct.unpack(">Q", large)
            payload += 8
        elif size == 0:  # to the end of the file
            size = end - offset
        if size < payload - offset or offset + size > end:
            break
        found.append((kind, payload, offset + size))
        offset += size
    return found


def mp4_duration_ms(stream: BinaryIO, size: int) -> int | None:
    """The duration of an MP4 file from its ``moov/mvhd``; None if it has none."""
    for kind, start, end in _boxes(stream, 0, size):
        if kind != b"moov":
            continue
        for inner, payload, inner_end in _boxes(stream, start, end):
            if inner != b"mvhd" or inner_end - payload < 20:
                continue
            stream.seek(payload)
            head = stream.read(min(inner_end - payload, 32))
            # version 1: 64-bit times and duration; 0: 32-bit (after version and flags)
            layout, offset = (">IQ", 20) if head[0] == 1 else (">II", 12)
            if len(head) < offset + struct.calcsize(layout):
                return None
            timescale, duration = struct.unpack_from(layout, head, offset)
            if timescale == 0:
                return None
            return int(duration) * 1000 // int(timescale)
    return None
