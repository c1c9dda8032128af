"""The command line as a new user meets it: --version, help for every option, no silent work
without a command, shared ordering flags, decode --reference, replay --payload."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

import pytest
import torch
from PIL import Image
from skimage import data

import satlink
from satlink.cli import build_parser, main
from satlink.packets import parse_packet

torch.set_num_threads(1)


def _subparsers(parser: argparse.ArgumentParser, prefix: str = ""):
    yield prefix or "satlink", parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _subparsers(sub, f"{prefix} {name}".strip())


def test_every_option_and_argument_has_help():
    missing = [
        f"{where}: {action.option_strings or action.dest}"
        for where, parser in _subparsers(build_parser())
        for action in parser._actions
        if not isinstance(action, argparse._SubParsersAction) and not action.help
    ]
    assert missing == []


def test_version_and_bare_command_print_and_write_nothing(tmp_path):
    run = [sys.executable, "-m", "satlink.cli"]
    done = subprocess.run([*run, "--version"], capture_output=True, text=True, cwd=tmp_path)
    assert done.returncode == 0 and done.stdout.strip() == f"satlink {satlink.__version__}"
    done = subprocess.run(run, capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert done.returncode == 0
    assert done.stdout.startswith("usage: satlink") and "replay" in done.stdout
    assert list(tmp_path.iterdir()) == []  # no replay-out/, nothing


def test_encode_and_replay_share_the_ordering_flags():
    def ordering(name):
        sub = dict(_subparsers(build_parser()))[name]
        return {
            a.dest: (tuple(a.option_strings), a.choices)
            for a in sub._actions
            if a.dest in ("order", "interleave")
        }

    assert ordering("encode") == ordering("replay")
    assert ordering("replay")["order"][1] == ("stage-major", "position-major")


@pytest.fixture(scope="module")
def image_path(tmp_path_factory):
    path = tmp_path_factory.mktemp("img") / "small.png"
    Image.fromarray(data.coffee()[100:228, 200:392]).save(path)  # 192×128
    return path


def test_encode_order_and_decode_reference(image_path, tmp_path, capsys):
    pkts = tmp_path / "p"
    assert main(["encode", str(image_path), "--out", str(pkts), "--order", "position-major",
                 "--interleave"]) == 0  # fmt: skip
    first = parse_packet(sorted(pkts.glob("packet_*"))[0].read_bytes())
    assert first.order == "position-major" and first.interleave
    capsys.readouterr()
    out = tmp_path / "preview.png"
    assert main(["decode", str(pkts), "--out", str(out), "--reference", str(image_path)]) == 0
    text = capsys.readouterr().out
    assert f"against {image_path}: PSNR " in text and "MS-SSIM 0." in text
    other = tmp_path / "other.png"
    Image.fromarray(data.coffee()[:64, :64]).save(other)
    assert main(["decode", str(pkts), "--out", str(out), "--reference", str(other)]) == 2
    assert "64×64 px but the decoded picture is 192×128 px" in capsys.readouterr().err


def test_replay_payload_sends_a_classical_file_through_the_replay(image_path, tmp_path, capsys):
    out = tmp_path / "r"
    args = ["replay", "--image", str(image_path), "--out", str(out), "--quiet", "--payload"]
    assert main([*args, "jpeg", "--set", "channel.loss.model='none'"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["payload"]["payload"] == "jpeg" and summary["payload"]["fits"] is True
    assert summary["previews"] == 1  # a file shows nothing until it is whole
    assert summary["time_to_first_preview_s"] == summary["time_to_full_quality_s"]
    assert (out / "report.html").is_file() and (out / "packets.pcap").is_file()
