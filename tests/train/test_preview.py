"""Training previews are PNGs written by resin's own writer: no imaging library needed."""

from __future__ import annotations

import struct
import sys
import zlib

import numpy as np

from resin.train.preview import preview_image, write_preview


def _read_grey_png(data: bytes) -> np.ndarray:
    """Decode the 8-bit greyscale, filter-0 PNGs resin writes."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, chunks = 8, {}
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos:pos + 4])
        tag = data[pos + 4:pos + 8]
        body = data[pos + 8:pos + 8 + length]
        (crc,) = struct.unpack(">I", data[pos + 8 + length:pos + 12 + length])
        assert crc == zlib.crc32(tag + body) & 0xFFFFFFFF, tag
        chunks[tag] = chunks.get(tag, b"") + body
        pos += 12 + length
    w, h, depth, colour = struct.unpack(">IIBB", chunks[b"IHDR"][:10])
    assert (depth, colour) == (8, 0)
    rows = np.frombuffer(zlib.decompress(chunks[b"IDAT"]), np.uint8).reshape(h, w + 1)
    assert not rows[:, 0].any()  # filter type 0 on every row
    return rows[:, 1:]


def test_previews_are_written_without_pillow(tmp_path, monkeypatch, rng):
    monkeypatch.setitem(sys.modules, "PIL", None)  # `import PIL` now raises ImportError
    raw = rng.random((8, 12, 16)).astype(np.float32)
    enhanced = raw * 0.5
    path = write_preview(tmp_path / "m.previews" / "step0000002.png", raw, enhanced)
    assert path == tmp_path / "m.previews" / "step0000002.png"
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temporary file left
    np.testing.assert_array_equal(_read_grey_png(path.read_bytes()),
                                  preview_image(raw, enhanced))
