"""Loading weights and images: shipped weights offline, one clear line for bad input."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from codec import ModelNotFoundError, load_codec


class _Payload:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_a_file_that_would_run_code_is_refused_without_running_it(tmp_path) -> None:
    marker = tmp_path / "ran"
    torch.save({"state_dict": _Payload(marker), "config": {}, "model_id": 1}, tmp_path / "e.pt")
    with pytest.raises(ModelNotFoundError, match="could run code"):
        load_codec(tmp_path / "e.pt")
    assert not marker.exists()


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "empty or cut short"),
        (b"hello, not weights", "not a PyTorch archive"),
    ],
)
def test_broken_files_get_one_clear_line(tmp_path, content: bytes, message: str) -> None:
    path = tmp_path / "w.pt"
    path.write_bytes(content)
    with pytest.raises(ModelNotFoundError, match=message) as info:
        load_codec(path)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("blob", [{"a": 1}, [1, 2], {"config": {}, "state_dict": {}}])
def test_torch_files_that_are_not_codec_weights_are_refused(tmp_path, blob) -> None:
    torch.save(blob, tmp_path / "w.pt")
    with pytest.raises(ModelNotFoundError, match="lacks the config"):
        load_codec(tmp_path / "w.pt")


def test_truncated_weights_are_refused(tmp_path) -> None:
    from codec.zoo import DEFAULT_MODEL, weights_path

    data = weights_path(DEFAULT_MODEL).read_bytes()
    (tmp_path / "cut.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelNotFoundError, match=r"cut\.pt"):
        load_codec(tmp_path / "cut.pt")


def test_a_retired_release_is_refused_with_the_way_to_its_file(monkeypatch, tmp_path) -> None:
    import shutil

    from codec import zoo

    # A stand-in: whichever release is retired, the message and the path route must hold.
    monkeypatch.setitem(zoo.RETIRED, 99, ("progic-rvq-old", "0123abc"))
    for ref in (99, "progic-rvq-old"):
        with pytest.raises(ModelNotFoundError) as info:
            load_codec(ref)
        msg = str(info.value)
        assert "model 99 (progic-rvq-old) is retired" in msg and "\n" not in msg
        assert "git show 0123abc:codec/weights/progic-rvq-old.pt" in msg
    # The file itself, fetched from git history, still loads by path.
    shutil.copy(zoo.weights_path(zoo.DEFAULT_MODEL), tmp_path / "progic-rvq-old.pt")
    assert load_codec(tmp_path / "progic-rvq-old.pt").num_stages == 5


def test_retired_releases_are_neither_shipped_nor_reused() -> None:
    from codec import zoo

    assert not set(zoo.RETIRED) & set(zoo.MODELS)
    for model_id, (name, commit) in zoo.RETIRED.items():
        assert not (zoo.WEIGHTS_DIR / f"{name}.pt").exists(), name
        assert name not in zoo.MODELS.values() and len(commit) >= 7, model_id


def test_unknown_names_and_ids(tmp_path) -> None:
    with pytest.raises(ModelNotFoundError, match="unknown model id 77"):
        load_codec(77)
    with pytest.raises(ModelNotFoundError, match="no weights at"):
        load_codec(tmp_path / "absent.pt")


def test_exif_orientation_is_applied() -> None:
    import io

    import numpy as np
    from PIL import Image

    from codec.api import load_image

    pixels = np.zeros((40, 60, 3), np.uint8)
    pixels[:, :10] = 255  # a white band on the left edge
    im = Image.fromarray(pixels)
    exif = im.getexif()
    exif[0x0112] = 6  # "rotate 90° clockwise to display"
    buf = io.BytesIO()
    im.save(buf, "JPEG", exif=exif, quality=95)
    shown = load_image(buf.getvalue())
    assert shown.shape == (60, 40, 3)
    assert shown[:10].mean() > 200 and shown[-10:].mean() < 50  # the band is now on top


def test_a_decompression_bomb_header_is_refused() -> None:
    import struct
    import zlib

    from codec import CodecInputError
    from codec.api import load_image

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
        return struct.pack(">I", len(data)) + kind + data + crc

    header = struct.pack(">IIBBBBB", 30000, 30000, 8, 2, 0, 0, 0)
    png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IEND", b"")
    with pytest.raises(CodecInputError, match="refusing image"):
        load_image(png)


def test_a_chain_of_differences_unpacks_each_base_once(monkeypatch) -> None:
    import codec.checkpoint as checkpoint
    from codec.zoo import MODELS, weights_path

    oldest = min(MODELS)
    monkeypatch.setattr(checkpoint, "_BASES", {})
    reads: list[str] = []
    real_load = torch.load

    def counting_load(path, *args, **kwargs):
        reads.append(Path(path).name)
        return real_load(path, *args, **kwargs)

    monkeypatch.setattr(torch, "load", counting_load)
    first = checkpoint.load_weights(weights_path(oldest))["state_dict"]
    assert len(reads) > 1  # the oldest file, then the newer ones its chain rests on
    reads.clear()
    again = checkpoint.load_weights(weights_path(oldest))["state_dict"]
    assert reads == [weights_path(oldest).name]  # its bases come from the cache
    assert all(torch.equal(first[k], again[k]) for k in first)
