"""Learn RVQ codebooks and per-depth modulation by gradient through a fixed decoder.

Training moves codebooks by EMA: each code goes to the mean of the residuals it serves, which
is the best code for the *latent* but not for the *picture* the decoder renders from it. Here
every weight of the network is fixed and only the named stages' codes learn, from the same
L1 + MS-SSIM + chroma loss training uses, at the depths those stages reach::

    python tools/tune_codebooks.py --stages 4,5 --init-weights codec/weights/progic-rvq-v12.pt \\
        --data ../shared/data/train --out runs/cb --crop-px 256 --batch-size 4 --bf16 true \\
        --msssim-weight 0.97 --chroma-weight 0 --lr 1e-3 --warmup-steps 20 --steps 100000 \\
        --lr-clock wall --max-wall-s 1500 --val-every 500 --export-every 250 --export-keep 8

Give ``--crop-px 256`` (the training default is 128): validation scores 256-px crops, and
MS-SSIM's five scales see a different picture at 128 px; tuned on 128-px crops, the codes
*lost* 0.0001–0.0002 validation MS-SSIM at stages 4 and 5 instead of gaining it.

Stages are counted from 1, as previews are. Depths below the first named stage decode exactly
as before (their codes and the decoder do not move), so the tune can only change the deeper
previews; the indices of the named stages (and of any stage after them) change with their codes.
Each sample of a batch is decoded once, the depths from the first named stage to the last
taken in turn (``--depth-weighting equal``, how v12's stages 4 and 5 were tuned), or drawn with
training's ProGIC weights (``--depth-weighting stage``, ``--stage-weight-p``), which favour the
full depth. ``--depths`` names the depths decoded instead (from the first named stage on).
``--film true`` also trains what only those depths read in the decoder: their rows of
``stage_film`` (the modulation chosen by the number of stages present) and the received-mask
input columns in ``from_latent`` from the first named stage on (zero at any shallower depth);
the other previews still decode bit for bit. ``--stages none --depths 1 --film true`` tunes
stage 1's modulation alone: every deeper preview stays as it was. The options are
``python -m codec.train``'s; the schedule (warmup, cosine, ``--lr-clock wall``), validation
log (``OUT/log.jsonl``) and exports (``OUT/step_N.pt``, model id 0) are the trainer's. A run
does not resume: it is minutes long, and each export is a complete weight file to continue
from with ``--init-weights``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import TextIO

import torch
from torch.utils.hooks import RemovableHandle

from codec.quantizer import ResidualVQ
from codec.train import Trainer, depth_mask, sample_depths, stage_weights
from codec.train.cli import parse_args, run_reporting, trainer_from_args

__all__ = ["tune_codebooks"]

PROG = "tune_codebooks.py"
WEIGHTINGS = ("equal", "stage")


def _parse_stages(text: str, num_stages: int, flag: str = "--stages") -> list[int]:
    if flag == "--stages" and text == "none":
        return []
    try:
        stages = sorted({int(v) for v in text.split(",")})
    except ValueError:
        stages = []
    if not stages or not all(1 <= s <= num_stages for s in stages):
        raise ValueError(f"{flag} must name stages between 1 and {num_stages}, got {text!r}")
    return stages


def depth_weights(depths: list[int], num_stages: int, weighting: str, p: float) -> torch.Tensor:
    """How often each depth the tune decodes is drawn: ``"equal"`` all alike, ``"stage"`` by
    training's ProGIC weights (full depth ``1 - p``, each other ``p / (S - 1)``), renormalised
    over those depths.

    >>> depth_weights([4, 5], 5, "equal", 0.35).tolist()
    [0.5, 0.5]
    >>> [round(w, 3) for w in depth_weights([2, 3, 4, 5], 5, "stage", 0.35).tolist()]
    [0.096, 0.096, 0.096, 0.712]
    """
    if weighting == "equal":
        return torch.full((len(depths),), 1.0 / len(depths))
    if weighting == "stage":
        w = stage_weights(num_stages, p)[[d - 1 for d in depths]]
        return w / w.sum()
    raise ValueError(f"--depth-weighting must be one of {WEIGHTINGS}, got {weighting!r}")


def _only_at(param: torch.Tensor, dim: int, index: list[int]) -> RemovableHandle:
    """Let ``param`` learn along ``dim`` only at ``index``; the rest keep their values (Adam
    without weight decay never moves an entry whose gradient is always zero). Returns the
    gradient hook's handle: left on a parameter, it would freeze those entries in any later
    training of the same network."""
    learns = torch.zeros(param.shape[dim], dtype=param.dtype, device=param.device)
    learns[index] = 1.0
    shape = [1] * param.dim()
    shape[dim] = -1
    learns = learns.reshape(shape)
    param.requires_grad_(True)
    return param.register_hook(lambda grad: grad * learns)


def tune_codebooks(
    trainer: Trainer,
    stages: list[int],
    log: TextIO | None = None,
    weighting: str = "equal",
    film: bool = False,
    depths: list[int] | None = None,
) -> dict:
    """Run ``trainer``'s schedule with only ``stages``' (1-based) codebooks learning; returns
    the last validation. The codes learn in place, in ``trainer.net.rvq.codebooks``; each
    sample is decoded at one of ``depths`` (default: ``stages[0]`` to the full depth), drawn
    by :func:`depth_weights`. With ``film``, the FiLM rows of those depths learn too, and
    ``from_latent``'s mask columns from ``stages[0]`` on."""
    net = trainer.net
    rvq = net.rvq
    if not isinstance(rvq, ResidualVQ):
        raise ValueError("only a residual VQ with EMA codebooks can be tuned this way")
    s_count = rvq.num_stages
    if not stages and not film:
        raise ValueError("nothing to tune: name --stages or give --film true")
    if depths is None:
        if not stages:
            raise ValueError("--stages none needs --depths: the depths whose FiLM rows learn")
        depths = list(range(stages[0], s_count + 1))
    if stages and min(depths) < stages[0]:
        raise ValueError(
            f"--depths must start at the first tuned stage or deeper, got {depths} for stages "
            f"{stages}: a shallower preview must decode as before"
        )
    for param in net.parameters():
        param.requires_grad_(False)
    # (tensor, dim, indices that learn); the codebooks are a buffer [S, K, D] that autograd
    # tracks once asked to, the FiLM table is [S, width] (row = depth - 1), and from_latent's
    # input is the latent, then one received mask a stage ([C, D + S, 1, 1]).
    learning = []
    if stages:
        learning.append((rvq.codebooks, 0, [s - 1 for s in stages]))
    if film:
        learning.append((net.stage_film.weight, 0, [d - 1 for d in depths]))
        if stages:
            masks = range(net.config.latent_dim + stages[0] - 1, net.config.latent_dim + s_count)
            learning.append((net.from_latent.weight, 1, list(masks)))
    params = [param for param, _, _ in learning]
    hooks = [_only_at(param, dim, index) for param, dim, index in learning]
    try:
        return _run(trainer, params, depths, weighting, log)
    finally:
        for hook in hooks:
            hook.remove()
        for param in params:
            param.requires_grad_(False)


def _run(
    trainer: Trainer,
    params: list[torch.Tensor],
    depths: list[int],
    weighting: str,
    log: TextIO | None,
) -> dict:
    """The tune's loop over ``trainer``'s schedule; see :func:`tune_codebooks`."""
    cfg, net = trainer.cfg, trainer.net
    rvq, s_count = net.rvq, net.rvq.num_stages
    opt = torch.optim.Adam(params, lr=cfg.lr)
    weights = depth_weights(depths, s_count, weighting, cfg.stage_weight_p)
    choices = torch.tensor(depths)
    record = {"step": trainer.step, **trainer.validate()}
    if log is not None:
        log.write(json.dumps(record) + "\n")
        log.flush()  # the starting point is worth reading while the run goes on
    trainer.net.train()
    started = trainer.run_started = time.perf_counter()
    while trainer.step < cfg.steps:
        if cfg.max_wall_s and time.perf_counter() - started >= cfg.max_wall_s:
            break
        for group in opt.param_groups:
            group["lr"] = trainer.lr_at(trainer.step)
        x = trainer.batch()
        b = x.shape[0]
        with torch.no_grad(), trainer.autocast():
            z = net.analysis(x).float()
        with torch.no_grad():
            indices, _ = net.quantize(z)
        codewords = rvq.lookup(indices)  # carries the codes' gradient
        if weighting == "equal":  # the depths in turn, as v12's tune drew them
            drawn = choices[(torch.arange(b) + trainer.step * b) % len(depths)]
        else:
            drawn = choices[sample_depths(b, weights, trainer.gen) - 1]
        received = torch.ones(indices.shape, dtype=torch.bool, device=z.device)
        masks = depth_mask(received, drawn.to(z.device))
        latent = net.assemble_latent(codewords, masks)
        with trainer.autocast():
            recon = net.synthesis(latent, masks).float()
        loss = trainer.mix(*trainer.losses(x, recon, per_sample=True)).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        trainer.step += 1
        record = {"step": trainer.step, "lr": trainer.lr_at(trainer.step), "loss": loss.item()}
        if trainer.step % cfg.val_every == 0 and trainer.step < cfg.steps:  # the end has its own
            record.update(trainer.validate())
            trainer.net.train()
        if log is not None and len(record) > 3:
            log.write(json.dumps(record) + "\n")
            log.flush()
        if cfg.export_every and trainer.step % cfg.export_every == 0:
            _export(trainer)
    _export(trainer)
    record = {"step": trainer.step, **trainer.validate()}
    if log is not None:
        log.write(json.dumps(record) + "\n")
    return record


def _export(trainer: Trainer) -> None:
    rvq = trainer.net.rvq
    with torch.no_grad():
        # What an EMA step would divide back out: a run continued from the export with EMA
        # codebooks starts from the tuned codes, not from the sums of the old ones.
        rvq.ema_sum.copy_(rvq.codebooks * ResidualVQ.smoothed_count(rvq.ema_count)[..., None])
    trainer.export_snapshot()


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__, file=sys.stderr)
        return 0 if argv else 2
    ap = argparse.ArgumentParser(prog=PROG, add_help=False)
    ap.add_argument("--stages", required=True)
    ap.add_argument("--depth-weighting", default="equal")
    ap.add_argument("--film", default="false", choices=("true", "false"))
    ap.add_argument("--depths", default="")
    known, rest = ap.parse_known_args(argv)
    if known.depth_weighting not in WEIGHTINGS:  # before the corpus is loaded
        raise ValueError(
            f"--depth-weighting must be one of {WEIGHTINGS}, got {known.depth_weighting!r}"
        )
    args = parse_args(rest, PROG)
    if not args.init_weights:
        raise ValueError("--init-weights is required: the codes are tuned for a trained decoder")
    if args.resume:
        raise ValueError("--resume is not supported: continue from an export with --init-weights")
    trainer = trainer_from_args(args)
    s_count = trainer.net.rvq.num_stages
    stages = _parse_stages(known.stages, s_count)
    depths = _parse_stages(known.depths, s_count, "--depths") if known.depths else None
    with open(trainer.out / "log.jsonl", "a") as log:
        film = known.film == "true"
        last = tune_codebooks(trainer, stages, log, known.depth_weighting, film, depths)
    ms = " / ".join(f"{v:.5f}" for v in last["val_msssim"])
    print(f"{PROG}: stages {stages}, {trainer.step} steps; val MS-SSIM {ms}", file=sys.stderr)
    return 0


def cli(argv: list[str] | None = None) -> int:
    """:func:`main` with a bad file or setting as one line and exit status 2."""
    return run_reporting(PROG, lambda: main(argv))


if __name__ == "__main__":
    sys.exit(cli())
