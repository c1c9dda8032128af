"""Narrow one synthesis level of a released model and retrain around it (how v9–v11 were made).

    python tools/narrow_level.py cut codec/weights/progic-rvq-v8.pt runs/cut.pt \\
        --level 3 --channels 24 --data ../shared/data/train
    python tools/narrow_level.py drop codec/weights/progic-rvq-v11.pt runs/drop.pt \\
        --level 2 --data ../shared/data/train
    python tools/narrow_level.py train --learn-levels 3 --init-weights runs/cut.pt \\
        --data ../shared/data/train --out runs/n1 [any option of python -m codec.train]
    python tools/narrow_level.py train --learn-levels 2,3 --init-weights N1_AVERAGE.pt ...

``cut`` keeps the level's channels (and each block's FFN hidden units) that carry the most
energy to the next level, measured on random training crops decoded at every depth, slices
every tensor of the level to them, and refits the 1×1 conv after the level by least squares to
what the original model hands on: the narrower model starts near the wide one instead of from
scratch. ``drop`` removes one block from a level instead: the one whose absence changes the
model's pictures of those crops least, the conv after the level refitted the same way. Each
writes a training export (model id 0), not a release.

``train`` runs :class:`codec.train.Trainer` with only the named synthesis levels learning: their
blocks, the upsampling convs into and out of them and their columns of the FiLM table; every
other tensor (encoder, codebooks, other levels) stays as it is. A run resumes with
``--resume`` like any other.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np
import torch

from codec.data import list_images, load_corpus, random_crops
from codec.model import CodecConfig, ProgressiveCodec, film_columns
from codec.pack import split_paths
from codec.train import TrainConfig, Trainer, depth_mask
from codec.train.cli import parse_args, run_reporting, trainer_from_args
from codec.zoo import load_codec


def _depth_masks(indices: torch.Tensor):
    """The received masks of depths 1..S for ``indices`` ``[B, S, h, w]``, one batch each."""
    full = torch.ones_like(indices, dtype=torch.bool)
    for depth in range(1, indices.shape[1] + 1):
        yield depth_mask(full, torch.full((len(indices),), depth))


@torch.no_grad()
def cut(src: ProgressiveCodec, level: int, channels: int, crops: torch.Tensor) -> ProgressiveCodec:
    """``src`` with synthesis level ``level`` (1 = 1/8 resolution, ... the last = 1/2) cut to
    ``channels``, its blocks' FFNs to ``channels * ffn_ratio``; ``crops`` ``[N, 3, H, W]`` are
    the training pictures the choice and the refit are measured on."""
    cfg = src.config
    if not 0 < level < len(cfg.dec_channels):
        raise ValueError(f"--level must be between 1 and {len(cfg.dec_channels) - 1}, got {level}")
    wide = cfg.dec_channels[level]
    if not 0 < channels < wide:
        raise ValueError(f"--channels must be between 1 and {wide - 1}, got {channels}")
    dec_channels = list(cfg.dec_channels)
    dec_channels[level] = channels
    new_cfg = CodecConfig.from_dict({**cfg.to_dict(), "dec_channels": dec_channels})
    dst = ProgressiveCodec(new_cfg).eval()
    own = dst.state_dict()
    dst.load_state_dict(
        {k: v for k, v in src.state_dict().items() if own[k].shape == v.shape}, strict=False
    )
    src = src.eval()
    old_blocks, new_blocks = src.dec_levels[level], dst.dec_levels[level]
    old_out = src.dec_up[level]
    indices = src.encode_indices(crops)

    # What the wide level hands on (its last block's output and the conv after it), and each
    # block's FFN activations.
    grabbed: dict[str, list[torch.Tensor]] = {"out": [], "next": []}
    hooks = [
        old_blocks[-1].register_forward_hook(lambda m, i, o: grabbed["out"].append(o)),
        old_out.register_forward_hook(lambda m, i, o: grabbed["next"].append(o)),
    ]
    for j, block in enumerate(old_blocks):
        grabbed[j] = []
        hooks.append(
            block.pw1.register_forward_hook(lambda m, i, o, j=j: grabbed[j].append(o.relu()))
        )
    for received in _depth_masks(indices):
        src.decode_indices(indices, received)
    for hook in hooks:
        hook.remove()
    out = torch.cat(grabbed["out"])
    after = old_out.weight[:, :, 0, 0]
    keep = (after.pow(2).sum(0) * out.pow(2).mean((0, 2, 3))).argsort(descending=True)[:channels]
    keep = keep.sort().values

    # pixel_shuffle takes each output channel from 4 consecutive channels of the conv before it
    rows = (keep[:, None] * 4 + torch.arange(4)).flatten()
    dst.dec_up[level - 1].weight.copy_(src.dec_up[level - 1].weight[rows])
    dst.dec_up[level - 1].bias.copy_(src.dec_up[level - 1].bias[rows])
    old_cols, new_cols = film_columns(cfg), film_columns(new_cfg)
    film, old_film = dst.stage_film.weight, src.stage_film.weight
    for name, (start, width) in new_cols.items():  # the table's width changed: move the rest
        if not name.startswith(f"dec_levels.{level}."):
            film[:, start : start + width] = old_film[
                :, old_cols[name][0] : old_cols[name][0] + width
            ]
    for j, (old, new) in enumerate(zip(old_blocks, new_blocks, strict=True)):
        pw2 = old.pw2.weight[:, :, 0, 0]
        energy = pw2[keep].pow(2).sum(0) * torch.cat(grabbed[j]).pow(2).mean((0, 2, 3))
        hid = energy.argsort(descending=True)[: channels * cfg.ffn_ratio].sort().values
        new.dw.weight.copy_(old.dw.weight[keep])
        new.dw.bias.copy_(old.dw.bias[keep])
        new.pw1.weight.copy_(old.pw1.weight[hid][:, keep])
        new.pw1.bias.copy_(old.pw1.bias[hid])
        new.pw2.weight.copy_(old.pw2.weight[keep][:, hid])
        new.pw2.bias.copy_(old.pw2.bias[keep])
        name = f"dec_levels.{level}.{j}"
        old_col, new_col = old_cols[name][0], new_cols[name][0]
        film[:, new_col : new_col + channels] = old_film[:, old_col + keep]
        film[:, new_col + channels : new_col + 2 * channels] = old_film[:, old_col + wide + keep]

    _refit_after_level(dst, level, indices, torch.cat(grabbed["next"]))
    return dst


@torch.no_grad()
def _refit_after_level(
    dst: ProgressiveCodec, level: int, indices: torch.Tensor, target: torch.Tensor
) -> None:
    """Least-squares refit of the 1×1 conv after ``level``: what ``dst``'s level now hands it ->
    ``target`` ``[N*S, C, h, w]``, that conv's output in the source model at every depth."""
    feats: list[torch.Tensor] = []
    hook = dst.dec_levels[level][-1].register_forward_hook(lambda m, i, o: feats.append(o))
    for received in _depth_masks(indices):
        dst.decode_indices(indices, received)
    hook.remove()
    channels = feats[0].shape[1]
    x = torch.cat(feats).permute(0, 2, 3, 1).reshape(-1, channels)
    y = target.permute(0, 2, 3, 1).reshape(-1, target.shape[1])
    design = torch.cat([x, torch.ones(len(x), 1)], 1).double()
    solution = torch.linalg.lstsq(design, y.double()).solution.float()
    dst.dec_up[level].weight.copy_(solution[:channels].T[:, :, None, None])
    dst.dec_up[level].bias.copy_(solution[channels])


def _without_block(src: ProgressiveCodec, level: int, block: int) -> ProgressiveCodec:
    """``src`` less block ``block`` of synthesis ``level``; every other tensor as it was."""
    cfg = src.config
    depths = list(cfg.dec_depths)
    depths[level] -= 1
    new_cfg = CodecConfig.from_dict({**cfg.to_dict(), "dec_depths": depths})
    dst = ProgressiveCodec(new_cfg).eval()
    renamed = {}
    prefix = f"dec_levels.{level}."
    for name, value in src.state_dict().items():
        if name.startswith(prefix):
            j, rest = name[len(prefix) :].split(".", 1)
            if int(j) == block:
                continue
            name = f"{prefix}{int(j) - (int(j) > block)}.{rest}"
        renamed[name] = value
    old_cols, new_cols = film_columns(cfg), film_columns(new_cfg)
    old_film, film = renamed.pop("stage_film.weight"), dst.stage_film.weight.detach().clone()
    for name, (start, width) in new_cols.items():
        i, j = (int(v) for v in name.split(".")[1:])
        old_name = f"dec_levels.{i}.{j + (i == level and j >= block)}"
        film[:, start : start + width] = old_film[:, old_cols[old_name][0] :][:, :width]
    dst.load_state_dict({**renamed, "stage_film.weight": film})
    return dst


@torch.no_grad()
def drop(
    src: ProgressiveCodec, level: int, crops: torch.Tensor
) -> tuple[ProgressiveCodec, int, list[float]]:
    """``src`` with one block fewer in synthesis ``level`` (0 = 1/16 resolution, ... the last
    = 1/2): the block whose removal moves ``src``'s pictures of ``crops`` ``[N, 3, H, W]`` least
    at every depth, with the 1×1 conv after the level refitted. Returns the model, the dropped
    block's index and each block's mean squared change."""
    cfg = src.config
    if not 0 <= level < len(cfg.dec_depths):
        raise ValueError(f"--level must be between 0 and {len(cfg.dec_depths) - 1}, got {level}")
    if cfg.dec_depths[level] < 2:
        raise ValueError(f"--level {level} has a single block; drop needs at least two")
    src = src.eval()
    indices = src.encode_indices(crops)
    masks = list(_depth_masks(indices))
    target: list[torch.Tensor] = []
    hook = src.dec_up[level].register_forward_hook(lambda m, i, o: target.append(o))
    reference = [src.decode_indices(indices, received) for received in masks]
    hook.remove()
    changes = []
    for block in range(cfg.dec_depths[level]):
        candidate = _without_block(src, level, block)
        pictures = [candidate.decode_indices(indices, received) for received in masks]
        changes.append(
            float(sum((a - b).pow(2).mean() for a, b in zip(pictures, reference, strict=True)))
            / len(masks)
        )
    block = int(np.argmin(changes))
    dst = _without_block(src, level, block)
    _refit_after_level(dst, level, indices, torch.cat(target))
    return dst, block, changes


def learn_only_levels(trainer: Trainer, levels: list[int]) -> list[str]:
    """Fix every tensor but synthesis ``levels`` (blocks, the convs around them, their FiLM
    columns); returns the names that learn."""
    net = trainer.net
    count = len(net.config.dec_channels)
    if not levels or any(not 0 <= i < count for i in levels):
        # A level that does not exist would leave only frozen columns: a run that learns nothing.
        raise ValueError(f"--learn-levels must name levels between 0 and {count - 1}, got {levels}")
    learning = tuple(f"dec_levels.{i}." for i in levels) + tuple(
        f"dec_up.{j}." for i in levels for j in (i - 1, i) if j >= 0
    )
    for name, param in net.named_parameters():
        param.requires_grad_(name.startswith(learning) or name == "stage_film.weight")
    if trainer.film_kept is None:  # on --resume the checkpoint brought its own
        kept = torch.ones(net.stage_film.weight.shape[1], dtype=torch.bool)
        for block, (start, width) in film_columns(net.config).items():
            if int(block.split(".")[1]) in levels:
                kept[start : start + width] = False
        trainer.fix_film_columns(kept)
    trainer.frozen.add("codebooks")
    return [n for n, p in net.named_parameters() if p.requires_grad]


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] in (["cut"], ["drop"]):
        command = argv[0]
        ap = argparse.ArgumentParser(prog=f"narrow_level.py {command}")
        ap.add_argument("weights")
        ap.add_argument("dest")
        ap.add_argument("--level", type=int, default=3 if command == "cut" else 2)
        if command == "cut":
            ap.add_argument("--channels", type=int, required=True)
        ap.add_argument("--data", required=True, help="the training folder (never Kodak)")
        ap.add_argument("--crops", type=int, default=24)
        ap.add_argument("--crop-px", type=int, default=256)
        a = ap.parse_args(argv[1:])
        src = load_codec(a.weights).net
        # The training split, loaded as training loads it (the held-out images stay out).
        train_paths, _ = split_paths(list_images(a.data))
        images = load_corpus(train_paths, TrainConfig.max_side_px, a.crop_px)
        crops = random_crops(images, a.crops, a.crop_px, np.random.default_rng(7))
        if command == "cut":
            net = cut(src, a.level, a.channels, crops)
        else:
            net, block, changes = drop(src, a.level, crops)
            mse = ", ".join(f"{v:.3g}" for v in changes)
            print(
                f"dropped block {block} of level {a.level} (MSE without each: {mse})",
                file=sys.stderr,
            )
        blob = {"state_dict": net.state_dict(), "config": net.config.to_dict(), "model_id": 0}
        tmp = Path(f"{a.dest}.tmp")  # the file appears whole or not at all
        torch.save({**blob, "name": "custom", "step": 0}, tmp)
        os.replace(tmp, a.dest)
        shape = f"{list(net.config.dec_channels)} x {list(net.config.dec_depths)}"
        print(f"wrote {a.dest}: synthesis channels x blocks {shape}", file=sys.stderr)
        return 0
    if argv[:1] == ["train"]:
        ap = argparse.ArgumentParser(prog="narrow_level.py train", add_help=False)
        ap.add_argument("--learn-levels", required=True)
        known, rest = ap.parse_known_args(argv[1:])
        trainer = trainer_from_args(parse_args(rest, "narrow_level.py train"))
        levels = [int(v) for v in known.learn_levels.split(",")]
        print("learning:", learn_only_levels(trainer, levels), file=sys.stderr)
        trainer.run()
        return 0
    print(__doc__, file=sys.stderr)
    return 2


def cli() -> int:
    """:func:`main` with a bad file or setting as one line and exit status 2."""
    return run_reporting("narrow_level.py", main)


if __name__ == "__main__":
    sys.exit(cli())
