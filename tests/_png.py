"""Test helpers for screenshots: decode a PNG and say whether it shows more than a blank page."""

from __future__ import annotations

import numpy as np


def png_pixels(data: bytes) -> np.ndarray:
    """Decode an 8-bit, non-interlaced RGB/RGBA PNG (what Chromium writes) with zlib and NumPy only."""
    import struct
    import zlib

    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, header = 8, b"", None
    while pos < len(data):
        (length,), kind = struct.unpack(">I", data[pos:pos + 4]), data[pos + 4:pos + 8]
        body = data[pos + 8:pos + 8 + length]
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat += body
        pos += 12 + length
    assert header is not None
    width, height, depth, colour_type, _, _, interlace = header
    assert depth == 8 and colour_type in (2, 6) and interlace == 0, header
    bpp = 3 if colour_type == 2 else 4
    raw = np.frombuffer(zlib.decompress(idat), dtype=np.uint8).reshape(height, 1 + width * bpp)
    out = np.zeros((height, width * bpp), dtype=np.uint8)
    prior = np.zeros(width * bpp, dtype=np.uint8)
    for y in range(height):
        kind, row = raw[y, 0], raw[y, 1:]
        if kind == 0:
            line = row.copy()
        elif kind == 1:  # Sub: a running sum per channel
            line = (np.cumsum(row.reshape(width, bpp).astype(np.int64), axis=0) % 256).astype(np.uint8).ravel()
        elif kind == 2:  # Up
            line = row + prior
        else:  # Average / Paeth depend on the pixel to the left: rare rows, decoded byte by byte
            line = np.zeros_like(row)
            r, up = row.tolist(), prior.tolist()
            cur = [0] * len(r)
            for x in range(len(r)):
                a = cur[x - bpp] if x >= bpp else 0
                b, c = up[x], (up[x - bpp] if x >= bpp else 0)
                if kind == 3:
                    cur[x] = (r[x] + (a + b) // 2) & 255
                else:
                    p = a + b - c
                    pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                    cur[x] = (r[x] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
            line[:] = cur
        out[y], prior = line, line
    return out.reshape(height, width, bpp)

def assert_painted(data: bytes, min_colours: int = 10) -> np.ndarray:
    """A screenshot with more than a background and text: many colours, > 1 % not background."""
    pixels = png_pixels(data)
    flat = pixels.reshape(-1, pixels.shape[2])[:, :3]
    colours, counts = np.unique(flat, axis=0, return_counts=True)
    assert len(colours) > min_colours, f"the screenshot has {len(colours)} colours: blank"
    assert 1 - counts.max() / counts.sum() > 0.01
    return pixels
