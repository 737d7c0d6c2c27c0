"""Image checks for the upload function: the type from the bytes, and a safe filename.

Part of the pipeline's Lambda layer (notebook 06, the capstone). Plain Python, no imports
beyond the standard library, so it runs the same in a Lambda environment and in a test.

The type comes from the file's first bytes (its magic number), never from its name or the
Content-Type a client claims: a ``.png`` name on a PDF is still a PDF.
"""

from __future__ import annotations

import re
import unicodedata

# (content type, test on the first bytes). WebP is a RIFF container: "RIFF", size, "WEBP".
_SIGNATURES = (
    ("image/png", lambda head: head.startswith(b"\x89PNG\r\n\x1a\n")),
    ("image/jpeg", lambda head: head.startswith(b"\xff\xd8\xff")),
    ("image/gif", lambda head: head.startswith((b"GIF87a", b"GIF89a"))),
    ("image/webp", lambda head: len(head) >= 12 and head.startswith(b"RIFF") and head[8:12] == b"WEBP"),
)
EXTENSIONS = {"image/png": ".png", "image/jpeg": ".jpg", "image/gif": ".gif", "image/webp": ".webp"}
MAX_FILENAME_CHARS = 100
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def sniff_image_type(data: bytes) -> str | None:
    """The image's content type from its magic number (PNG, JPEG, GIF, WebP), else ``None``."""
    head = bytes(data[:16])
    for content_type, matches in _SIGNATURES:
        if matches(head):
            return content_type
    return None


def clean_filename(name: str) -> str:
    """The last path segment of ``name``, reduced to letters, digits, ``.``, ``_`` and ``-``.

    Path tricks are removed, not refused: ``../../etc/passwd`` -> ``passwd``,
    ``C:\\\\x\\\\cat.png`` -> ``cat.png``, ``..`` -> ``""``. Leading dots go (no hidden files,
    no ``..``), control characters and spaces become ``_``, accents are folded to ASCII, and
    the result is at most 100 characters (the extension kept). An empty answer means nothing
    usable was left; the caller refuses the upload then.
    """
    if not isinstance(name, str):
        return ""
    name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    name = name.replace("\\", "/").split("/")[-1]
    name = _UNSAFE.sub("_", name).strip("._-")
    name = re.sub(r"\.{2,}", ".", name)
    if len(name) > MAX_FILENAME_CHARS:
        stem, dot, extension = name.rpartition(".")
        if dot and 0 < len(extension) <= 10:
            name = stem[:MAX_FILENAME_CHARS - len(extension) - 1] + "." + extension
        else:
            name = name[:MAX_FILENAME_CHARS]
    return name
