"""Message identity: a message id derived from the content, so that two pictures never share one
by accident (``satlink encode`` used to give every picture id 1, and a folder holding packets of
two same-size pictures decoded into a blend of both).

The id is the first 16 bits of a BLAKE2b hash of the indices, the model id, the bits per index
and the image size (or, for a file message, of the file bytes and its content type). Two
different pictures share an id with probability 1/65536; the receiver keeps messages apart by
id, so it never blends two pictures unless their ids collide.

>>> import numpy as np
>>> from codec.code import ProgressiveCode
>>> a = ProgressiveCode(np.zeros((2, 4, 4), np.uint16), (64, 64), 10, 1)
>>> b = ProgressiveCode(np.ones((2, 4, 4), np.uint16), (64, 64), 10, 1)
>>> content_message_id(a) == content_message_id(a), content_message_id(a) != content_message_id(b)
(True, True)
>>> 0 <= file_message_id(b"\\x00" * 10, "image/avif") <= 0xFFFF
True
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from codec.code import ProgressiveCode

__all__ = ["content_message_id", "file_message_id"]


def content_message_id(code: ProgressiveCode) -> int:
    """16-bit message id of a code: a hash of indices, model id, bits per index, image size."""
    h = hashlib.blake2b(digest_size=8, person=b"satlink-msgid")
    indices = np.ascontiguousarray(np.asarray(code.indices, dtype=np.uint16))
    h.update(np.asarray(indices.shape, ">u4").tobytes())
    h.update(indices.astype(">u2").tobytes())
    h.update(np.asarray([code.model_id, code.bits_per_index, *code.image_size], ">u4").tobytes())
    return int.from_bytes(h.digest()[:2], "big")


def file_message_id(data: bytes, content_type: str = "application/octet-stream") -> int:
    """16-bit message id of a file message: a hash of its bytes and content type."""
    h = hashlib.blake2b(digest_size=8, person=b"satlink-fileid")
    h.update(content_type.encode())
    h.update(bytes(data))
    return int.from_bytes(h.digest()[:2], "big")
