"""JPEG at the highest quality that fits a byte budget, with the headers stripped or sent.

The JPEG headers of a given quality and image size are a pure function of both (standard
IJG quantisation tables, standard Huffman tables, fixed SOF/SOS), so "stripped" sends only
the entropy-coded scan and the receiver re-creates the header from the quality byte.
"""
from __future__ import annotations

import io
from functools import lru_cache

import numpy as np

from escmvq.core.vocab import JPEG_HEADERS, check_name

__all__ = ["HEADERS", "JpegCodec"]

HEADERS = JPEG_HEADERS
_SOS = b"\xff\xda"


@lru_cache(maxsize=512)
def _header(quality: int, size: tuple[int, int]) -> bytes:
    """Header bytes (SOI .. end of the SOS segment) of a baseline JPEG of ``size`` (H, W) at
    ``quality``, standard Huffman tables: identical for every image of that size."""
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (size[1], size[0]), (128, 128, 128)).save(buf, "JPEG", quality=int(quality), subsampling=2,
                                                                 optimize=False)
    data = buf.getvalue()
    i = data.index(_SOS)
    return data[: i + 2 + int.from_bytes(data[i + 2:i + 4], "big")]


class JpegCodec:
    """JPEG at a quality chosen to fit a byte budget.

    headers : "stripped" (send quality + scan; the receiver rebuilds the header) or "full"
    (send the whole Huffman-optimised JFIF file).
    """

    def __init__(self, headers: str = "stripped"):
        self.headers = check_name("headers", headers, HEADERS)

    def encode(self, img: np.ndarray, quality: int) -> bytes:
        """``img [H, W, 3]`` uint8 -> the bytes sent for it at ``quality`` (1..100)."""
        from PIL import Image

        buf = io.BytesIO()
        im = Image.fromarray(np.ascontiguousarray(img, np.uint8), "RGB")
        if self.headers == "full":
            im.save(buf, "JPEG", quality=int(quality), subsampling=2, optimize=True)
            return buf.getvalue()
        im.save(buf, "JPEG", quality=int(quality), subsampling=2, optimize=False)
        data = buf.getvalue()
        hdr = _header(int(quality), img.shape[:2])
        if not data.startswith(hdr):  # never seen; would break the header-compression assumption
            raise RuntimeError("JPEG header differs from the template of its quality and size")
        return data[len(hdr):]

    def decode(self, data: bytes, quality: int, size: tuple[int, int]) -> np.ndarray | None:
        """Bytes from :meth:`encode` -> ``[H, W, 3]`` uint8, or None when Pillow cannot decode
        them to an image of ``size``."""
        from PIL import Image

        full = data if self.headers == "full" else _header(int(quality), tuple(size)) + data
        try:
            with Image.open(io.BytesIO(full)) as im:
                im.load()
                a = np.asarray(im.convert("RGB"), np.uint8)
        except Exception:  # noqa: BLE001 - any decoder failure is a lost image
            return None
        return a if a.shape == (*size, 3) else None

    def fit(self, img: np.ndarray, budget: int) -> tuple[int, bytes] | None:
        """Highest quality (1..100) whose bytes fit in ``budget`` bytes -> (quality, bytes);
        None when even quality 1 does not fit."""
        lo, hi, best = 1, 100, None
        while lo <= hi:
            q = (lo + hi) // 2
            d = self.encode(img, q)
            if len(d) <= budget:
                best, lo = (q, d), q + 1
            else:
                hi = q - 1
        return best
