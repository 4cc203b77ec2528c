"""Small pictures of images for the thread and the inbox, so a page of photos loads as kilobytes.

The image came from a stranger: its header may promise a size that takes gigabytes to decode
(a decompression bomb), so the size is checked before any pixel is decoded, and Pillow's own
guard is made an error rather than a warning.
"""

from __future__ import annotations

import io
import warnings

from PIL import Image, ImageOps, UnidentifiedImageError

SIZE = 480  # the longer side, in pixels
MAX_PIXELS = 40_000_000  # a 40-megapixel photo decodes in a moment; more is refused
CONTENT_TYPE = "image/webp"


def thumbnail(data: bytes) -> bytes | None:
    """A WebP no larger than SIZE on each side, or None when the image cannot be made one."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as image:
                width, height = image.size
                if width * height > MAX_PIXELS:
                    return None
                image.draft("RGB", (SIZE, SIZE))  # JPEG: decode at a smaller scale at once
                small = ImageOps.exif_transpose(image) or image
                small = small.convert("RGBA" if _has_alpha(small) else "RGB")
                small.thumbnail((SIZE, SIZE))
                out = io.BytesIO()
                small.save(out, "WEBP", quality=80)
                return out.getvalue()
    except (
        UnidentifiedImageError,
        Image.DecompressionBombError,
        Image.DecompressionBombWarning,
        OSError,
        ValueError,
        SyntaxError,  # some truncated formats raise it from their parsers
    ):
        return None


def _has_alpha(image: Image.Image) -> bool:
    return image.mode in ("RGBA", "LA", "PA") or (
        image.mode == "P" and "transparency" in image.info
    )
