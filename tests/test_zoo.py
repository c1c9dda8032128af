"""Loading weight files: the shipped ones offline, and a clear refusal for anything else."""

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
    from codec.zoo import weights_path

    data = weights_path("progic-rvq-s").read_bytes()
    (tmp_path / "cut.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelNotFoundError, match=r"cut\.pt"):
        load_codec(tmp_path / "cut.pt")


def test_unknown_names_and_ids(tmp_path) -> None:
    with pytest.raises(ModelNotFoundError, match="unknown model id 77"):
        load_codec(77)
    with pytest.raises(ModelNotFoundError, match="no weights at"):
        load_codec(tmp_path / "absent.pt")
