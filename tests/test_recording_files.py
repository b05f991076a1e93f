"""The recordings directory adapter (livehub/recording_files.py): which paths SRS may name, and
the MP4 duration read from ``moov/mvhd`` (any bytes: never an exception)."""

from __future__ import annotations

import io
import struct
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from livehub.recording_files import LocalRecordingFiles, mp4_duration_ms


def box(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I4s", 8 + len(payload), kind) + payload


def mvhd(version: int, timescale: int, duration: int) -> bytes:
    if version == 1:
        times = struct.pack(">QQIQ", 0, 0, timescale, duration)
    else:
        times = struct.pack(">IIII", 0, 0, timescale, duration)
    return box(b"mvhd", bytes([version, 0, 0, 0]) + times + bytes(80))


def duration_of(data: bytes) -> int | None:
    return mp4_duration_ms(io.BytesIO(data), len(data))


def test_versions_0_and_1_and_a_64_bit_box_size() -> None:
    ftyp = box(b"ftyp", b"isom" + bytes(8))
    assert (
        duration_of(ftyp + box(b"mdat", bytes(100)) + box(b"moov", mvhd(0, 90000, 450000))) == 5000
    )
    assert duration_of(ftyp + box(b"moov", mvhd(1, 1000, 2**33))) == 2**33 * 1000 // 1000
    large = struct.pack(">I4sQ", 1, b"mdat", 16 + 10) + bytes(10)
    assert duration_of(ftyp + large + box(b"moov", mvhd(0, 1000, 1234))) == 1234


@pytest.mark.parametrize(
    "data",
    [
        b"",
        box(b"ftyp", b"isom"),  # no moov
        box(b"moov", box(b"mvhd", bytes([1, 0, 0, 0]) + bytes(10))),  # truncated mvhd
        box(b"moov", mvhd(0, 0, 100)),  # timescale 0
        struct.pack(">I4s", 4, b"moov"),  # a size smaller than its header
    ],
)
def test_no_duration_where_the_file_does_not_tell(data: bytes) -> None:
    assert duration_of(data) is None


@given(st.binary(max_size=512))
def test_any_bytes_give_a_duration_or_none(data: bytes) -> None:
    result = duration_of(data)
    assert result is None or result >= 0
    # and behind a valid prefix
    duration_of(box(b"moov", data))


def test_only_regular_files_inside_the_directory(tmp_path: Path) -> None:
    root = tmp_path / "rec"
    (root / "live").mkdir(parents=True)
    (root / "live" / "a.mp4").write_bytes(b"x")
    (tmp_path / "out.mp4").write_bytes(b"x")
    (root / "link.mp4").symlink_to(tmp_path / "out.mp4")
    (root / "inner.mp4").symlink_to(root / "live" / "a.mp4")
    files = LocalRecordingFiles(str(root))
    assert files.resolve(str(root), "./live/a.mp4") == "live/a.mp4"
    assert files.resolve("/", str(root / "live" / "a.mp4")) == "live/a.mp4"
    assert files.resolve(str(root), "inner.mp4") == "live/a.mp4"  # a link inside stays inside
    for cwd, file in [
        (str(root), "link.mp4"),  # a link out
        (str(root), "../out.mp4"),
        (str(root), "live"),  # a directory
        (str(root), "."),
        (str(root), "live/none.mp4"),
        ("relative/cwd", "live/a.mp4"),
        ("", "live/a.mp4"),
        (str(root), ""),
        (str(root), "live/a.mp4\x00"),
    ]:
        assert files.resolve(cwd, file) is None, (cwd, file)
