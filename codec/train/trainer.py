"""The trainer of the progressive RVQ codec: the recipe, one step, validation, exports.

One backward pass covers every stage depth with ProGIC's weighting (each of the first N-1
depths weighs p/(N-1), the full depth 1-p), on L1 + MS-SSIM. Codebooks start from k-means and
follow EMAs, dead codes are revived, and per-stage codebook use is logged. Random index erasures
teach the decoder to fill holes.

    python -m codec.train --data ../shared/data/train --out runs/main --steps 20000
    python -m codec.train --data ../shared/data/train --out runs/main --resume   # go on
    python -m codec.train export runs/main/last.ckpt codec/weights/default.pt
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from pytorch_msssim import ms_ssim
from torch import nn

from codec.checkpoint import (
    export_meta,
    load_checkpoint,
    load_weights,
    state_dict_cpu,
)
from codec.data import (
    center_crops,
    device_crops,
    fit_corpus,
    list_images,
    load_corpus,
    random_crops,
)
from codec.model import CodecConfig, ProgressiveCodec, film_columns
from codec.pack import load_pack, split_paths
from codec.quantizer import rotate_onto
from codec.search import MAX_BEAM_WIDTH, beam_indices
from codec.train.depths import (
    depth_mask,
    depth_masks,
    parse_depth_weights,
    random_erasures,
    sample_depths,
    stage_weights,
)

__all__ = [
    "ENCODER_MODULES",
    "FREEZABLE",
    "PatchDiscriminator",
    "TrainConfig",
    "Trainer",
    "freeze_parts",
    "latent_diagnostics",
    "msssim_window",
    "validate_weights",
]

# Parameters of the analysis transform (everything before the RVQ), by module name.
ENCODER_MODULES = ("stem.", "enc_", "to_latent.", "latent_ln.")
FREEZABLE = ("encoder", "codebooks", "borrowed")  # what --freeze may name


def freeze_parts(text: str) -> set[str]:
    """The parts a ``--freeze`` value names (comma-separated); unknown ones are refused by name.

    >>> sorted(freeze_parts("encoder,codebooks"))
    ['codebooks', 'encoder']
    """
    parts = {part for part in text.split(",") if part}
    unknown = sorted(parts - set(FREEZABLE))
    if unknown:
        raise ValueError(f"unknown parts {unknown}; choose from {FREEZABLE}")
    return parts


@dataclass
class TrainConfig:
    data: str
    out: str
    steps: int = 20000
    batch_size: int = 8
    crop_px: int = 128
    lr: float = 7e-4
    warmup_steps: int = 200
    lr_floor: float = 0.1  # share of lr the cosine ends at
    freeze: str = ""  # comma list of parts kept fixed: encoder, codebooks
    ema_decay: float = 0.99  # codebook EMA decay
    stage_weight_p: float = 0.5
    depth_weights: str = ""  # "w1,...,wS": the depth draw's weights in place of stage_weight_p's
    msssim_weight: float = 0.3
    # Extra L1 on chroma (each pixel minus its channel mean). Without it training drifts to a
    # luminance-only model: MS-SSIM and RGB L1 barely punish grey pictures.
    chroma_weight: float = 2.0
    commit_weight: float = 0.25
    erasure_prob: float = 0.5  # share of samples trained with random index holes
    erasure_max_rate: float = 0.3
    kmeans_batches: int = 24
    dead_after_steps: int = 20
    gan_weight: float = 0.0  # > 0 turns on the optional PatchGAN phase
    gan_start_step: int = 0
    val_every: int = 500
    ckpt_every: int = 200
    log_every: int = 25
    max_side_px: int = 1024
    seed: int = 0
    threads: int = 0
    device: str = "cpu"
    channels_last: bool = True
    # bf16 autocast for the convolutions (CPU with AVX-512 BF16, or CUDA). The quantizer, its
    # distances and the losses stay in fp32: later RVQ stages work on residuals far below bf16's
    # resolution of a 20-unit latent.
    bf16: bool = False
    config: str = ""  # "tiny" or a JSON CodecConfig; empty is the default model
    # "all": decode every depth of every sample (five decoder passes a step). "one": draw one
    # depth per sample with the ProGIC weights (quantizer dropout, as in SoundStream), which
    # costs one decoder pass and was measured 6.5x cheaper per step.
    depth_sampling: str = "all"
    # "all": the encoder learns from every depth's loss through the straight-through estimator.
    # "full": only full-depth reconstructions train the encoder; partial depths train the
    # decoder. Partial-depth gradients reward a latent the first stage alone captures, which is
    # how the first model's latent collapsed to a handful of directions.
    encoder_grad: str = "all"
    # How the quantizer passes gradients to the encoder: "ste" copies them unchanged
    # (straight-through), "rotation" turns them with the angle to the code (rotation trick).
    quantizer_grad: str = "ste"
    # > 1: that share of the batches is quantized by the encoder's beam search (codec.search),
    # so the decoder learns what `encode(beam_width=W)` sends; validation keeps the nearest codes.
    beam_width: int = 1
    beam_share: float = 0.5
    max_images: int = 0
    # With --init-weights of another shape (--config): take the tensors whose name and shape
    # match, start the rest fresh. A lighter decoder keeps the shipped encoder and codebooks
    # (so its indices stay those of the release) and trains only what changed.
    init_partial: bool = False
    progress: bool = True
    # Stop this invocation after so many seconds of steps (0: no limit), saving a checkpoint:
    # a GPU lease or a session ends at a fixed time, not at a step count.
    max_wall_s: float = 0.0
    # What the cosine decay runs on: "steps" (to --steps) or "wall" (to --max-wall-s). A lent
    # GPU gives a fixed time at a speed not known beforehand; a step-count schedule cut short by
    # the clock would end at a high rate, so there the decay follows the clock (per invocation:
    # a resumed run decays again over its own --max-wall-s).
    lr_clock: str = "steps"
    # Every N steps also write exported weights (step_N.pt, the newest export_keep kept): a
    # weights-only file is a third of a checkpoint and fits what a lent machine sends back.
    export_every: int = 0
    export_keep: int = 3


def latent_diagnostics(z: torch.Tensor, codewords: torch.Tensor) -> dict:
    """Participation ratio of the latent and residual energy left after each RVQ stage.

    ``z`` ``[B, D, h, w]``, ``codewords`` ``[B, S, D, h, w]``. The participation ratio
    (sum of covariance eigenvalues)^2 / sum of their squares counts the directions the latent
    really uses: 1 for a line, D for an isotropic cloud.
    """
    flat = z.permute(0, 2, 3, 1).reshape(-1, z.shape[1]).double()
    eig = torch.linalg.eigvalsh(torch.cov(flat.T)).clamp_min(0)
    pr = float(eig.sum() ** 2 / (eig.pow(2).sum() + 1e-30))
    energy = float(flat.pow(2).sum())
    residual, left = z.double(), []
    for s in range(codewords.shape[1]):
        residual = residual - codewords[:, s].double()
        left.append(float(residual.pow(2).sum()) / max(energy, 1e-30))
    return {"latent_participation_ratio": pr, "residual_energy_per_stage": left}


class PatchDiscriminator(nn.Module):
    """A small PatchGAN (70×70-style receptive field, 3 strided convs) for the optional phase."""

    def __init__(self, ch: int = 32) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(3, ch, 4, 2, 1),
            nn.LeakyReLU(0.2),
            nn.Conv2d(ch, 2 * ch, 4, 2, 1),
            nn.LeakyReLU(0.2),
            nn.Conv2d(2 * ch, 4 * ch, 4, 2, 1),
            nn.LeakyReLU(0.2),
            nn.Conv2d(4 * ch, 1, 3, 1, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x - 0.5)


def msssim_window(crop_px: int) -> int:
    # pytorch-msssim needs the short side > (win-1) * 2^4 for its 5 scales.
    win = 11
    while (win - 1) * 16 >= crop_px and win > 3:
        win -= 2
    return win


class Trainer:
    def __init__(self, cfg: TrainConfig) -> None:
        self.cfg = cfg
        if cfg.depth_sampling not in ("all", "one"):
            raise ValueError(f"depth_sampling must be 'all' or 'one', got {cfg.depth_sampling!r}")
        if cfg.lr_clock not in ("steps", "wall"):
            raise ValueError(f"lr_clock must be 'steps' or 'wall', got {cfg.lr_clock!r}")
        if cfg.lr_clock == "wall" and cfg.max_wall_s <= 0:
            raise ValueError("lr_clock 'wall' needs max_wall_s > 0")
        if cfg.encoder_grad not in ("all", "full"):
            raise ValueError(f"encoder_grad must be 'all' or 'full', got {cfg.encoder_grad!r}")
        if not 1 <= cfg.beam_width <= MAX_BEAM_WIDTH or not 0 <= cfg.beam_share <= 1:
            raise ValueError(
                f"beam_width must be in 1..{MAX_BEAM_WIDTH} and beam_share in 0..1, got "
                f"{cfg.beam_width} and {cfg.beam_share}"
            )
        if cfg.quantizer_grad not in ("ste", "rotation"):
            raise ValueError(
                f"quantizer_grad must be 'ste' or 'rotation', got {cfg.quantizer_grad!r}"
            )
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        torch.manual_seed(cfg.seed)
        self.device = torch.device(cfg.device)
        if cfg.config == "tiny":
            self.model_cfg = CodecConfig.tiny()
        elif cfg.config:
            self.model_cfg = CodecConfig.from_dict(json.loads(cfg.config))
        else:
            self.model_cfg = CodecConfig()
        self.net = ProgressiveCodec(self.model_cfg).to(self.device)
        if cfg.channels_last:
            self.net = self.net.to(memory_format=torch.channels_last)
        if not 0.0 < cfg.ema_decay < 1.0:
            raise ValueError(f"ema_decay must be in (0, 1), got {cfg.ema_decay}")
        if not 0.0 <= cfg.lr_floor <= 1.0:
            raise ValueError(f"lr_floor must be in [0, 1], got {cfg.lr_floor}")
        if self.net.rvq.uses_ema:
            self.net.rvq.decay = cfg.ema_decay
        self.frozen = freeze_parts(cfg.freeze)
        if "borrowed" in self.frozen and not cfg.init_partial:
            raise ValueError("--freeze borrowed needs --init-weights with --init-partial true")
        if "encoder" in self.frozen:  # the indices stay as they are: codebooks too
            self.frozen.add("codebooks")
            for name, param in self.net.named_parameters():
                if name.startswith(ENCODER_MODULES):
                    param.requires_grad_(False)
        if "codebooks" in self.frozen:  # a gradient-learned quantizer: its projections too
            self.net.rvq.requires_grad_(False)
        self.opt = torch.optim.Adam(self.net.parameters(), lr=cfg.lr)
        self.disc = self.disc_opt = None
        if cfg.gan_weight > 0:
            self.disc = PatchDiscriminator().to(self.device)
            self.disc_opt = torch.optim.Adam(self.disc.parameters(), lr=cfg.lr, betas=(0.5, 0.9))
        self.step = 0
        self.wall_s = 0.0
        self.run_started = time.perf_counter()
        # Steps and seconds already in weights given to --init-weights; the schedule restarts at
        # step 0, but exported weights report the whole history.
        self.prior_steps, self.prior_wall_s = 0, 0.0
        self.kmeans_done = False
        self.film_kept: torch.Tensor | None = None  # stage_film columns --freeze borrowed keeps
        self.rng = np.random.default_rng(cfg.seed)
        self.gen = torch.Generator().manual_seed(cfg.seed)
        self.weights = (
            parse_depth_weights(cfg.depth_weights, self.model_cfg.num_stages)
            if cfg.depth_weights
            else stage_weights(self.model_cfg.num_stages, cfg.stage_weight_p)
        )
        self.win = msssim_window(cfg.crop_px)
        self.usage = torch.zeros(self.model_cfg.num_stages, self.model_cfg.codebook_size)
        self.out = Path(cfg.out)
        self.out.mkdir(parents=True, exist_ok=True)

        if cfg.data.endswith(".npz"):
            self.train_images = fit_corpus(load_pack(cfg.data, "train"), cfg.max_side_px, 0)
            self.val_images = fit_corpus(load_pack(cfg.data, "val"), cfg.max_side_px, 0)
            if cfg.max_images:
                self.train_images = self.train_images[: cfg.max_images]
            self.train_images = [im for im in self.train_images if min(im.shape[:2]) >= cfg.crop_px]
        else:
            paths = list_images(cfg.data)
            if cfg.max_images:
                paths = paths[: cfg.max_images]
            # Every 20th image is held out for validation (never Kodak: evaluation only).
            train_paths, val_paths = split_paths(paths)
            self.train_images = load_corpus(train_paths, cfg.max_side_px, cfg.crop_px)
            self.val_images = load_corpus(val_paths, cfg.max_side_px, cfg.crop_px)
        # On an accelerator the corpus lives on the device and crops are cut there.
        self.train_tensors = None
        if self.device.type != "cpu":
            self.train_tensors = [torch.from_numpy(im).to(self.device) for im in self.train_images]
        if not self.train_images or not self.val_images:
            raise ValueError(f"no image in {cfg.data} is at least {cfg.crop_px} px on each side")
        self.val_crop = min([256] + [min(im.shape[:2]) for im in self.val_images]) // 16 * 16

    # -- state ----------------------------------------------------------------------------------
    def state(self) -> dict:
        st = {
            "step": self.step,
            "wall_s": self.wall_s,
            "prior_steps": self.prior_steps,
            "prior_wall_s": self.prior_wall_s,
            "kmeans_done": self.kmeans_done,
            "model": self.net.state_dict(),
            "opt": self.opt.state_dict(),
            "config": self.model_cfg.to_dict(),
            "train_config": vars(self.cfg),
            "rng": self.rng.bit_generator.state,
            "gen": self.gen.get_state(),
            # --freeze borrowed depends on the weights a run started from: keep it on resume.
            "frozen": sorted(self.frozen),
            "fixed": sorted(n for n, p in self.net.named_parameters() if not p.requires_grad),
            "film_kept": None if self.film_kept is None else self.film_kept.cpu(),
        }
        if self.disc is not None:
            st["disc"], st["disc_opt"] = self.disc.state_dict(), self.disc_opt.state_dict()
        return st

    def save(self, name: str = "last.ckpt") -> None:
        tmp = self.out / (name + ".tmp")
        torch.save(self.state(), tmp)
        os.replace(tmp, self.out / name)

    def load(self, path: Path) -> None:
        st = load_checkpoint(path, self.device)
        self.net.load_state_dict(st["model"])
        self.opt.load_state_dict(st["opt"])
        self.step, self.wall_s, self.kmeans_done = st["step"], st["wall_s"], st["kmeans_done"]
        self.prior_steps, self.prior_wall_s = st.get("prior_steps", 0), st.get("prior_wall_s", 0.0)
        self.rng.bit_generator.state = st["rng"]
        self.gen.set_state(st["gen"])
        self.frozen |= set(st.get("frozen", ()))
        fixed = set(st.get("fixed", ()))
        for name, param in self.net.named_parameters():
            if name in fixed:
                param.requires_grad_(False)
        if st.get("film_kept") is not None and self.film_kept is None:
            self.fix_film_columns(st["film_kept"])
        if self.disc is not None and "disc" in st:
            self.disc.load_state_dict(st["disc"])
            self.disc_opt.load_state_dict(st["disc_opt"])

    def init_from_weights(self, path: Path) -> None:
        st = load_weights(Path(path))
        if not self.cfg.init_partial:
            self.net.load_state_dict(st["state_dict"])
            self.prior_steps, self.prior_wall_s = st.get("step", 0), st.get("train_wall_s", 0.0)
            self.kmeans_done = True
            return
        own = self.net.state_dict()
        fits = {k: v for k, v in st["state_dict"].items() if k in own and own[k].shape == v.shape}
        film, film_kept = self._borrowed_film(st, fits)
        self.net.load_state_dict(
            fits | ({"stage_film.weight": film} if film is not None else {}), strict=False
        )
        # A new model: its history starts here, whatever the weights it borrowed had behind them.
        self.prior_steps, self.prior_wall_s = 0, 0.0
        self.kmeans_done = all(k in fits for k in own if k.startswith("rvq."))
        if "borrowed" in self.frozen:  # only what starts fresh learns
            for name, param in self.net.named_parameters():
                param.requires_grad_(param.requires_grad and name not in fits)
            if self.kmeans_done:  # the codebooks were borrowed: no EMA update either
                self.frozen.add("codebooks")
            if film_kept is not None:  # a borrowed block's modulation stays as it was too
                self.fix_film_columns(film_kept)
        print(
            f"--init-partial: {len(fits)} of {len(own)} tensors from {Path(path).name}, "
            f"{len(own) - len(fits)} start fresh",
            file=sys.stderr,
        )

    def _borrowed_film(
        self, st: dict, fits: dict
    ) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """``stage_film`` rebuilt for this decoder when the depths differ, and which of its
        columns were borrowed (``[width]`` bool): each block that kept its tensors keeps its
        modulation; a new block starts with none (zeros), as a fresh model's does. Without this,
        deepening a decoder by one block would reset every block's FiLM."""
        key = "stage_film.weight"
        theirs = st["state_dict"].get(key)
        if key in fits or theirs is None:
            return None, None
        mine = torch.zeros_like(self.net.state_dict()[key])
        if mine.shape[0] != theirs.shape[0]:
            return None, None
        kept = torch.zeros(mine.shape[1], dtype=torch.bool)
        old = film_columns(CodecConfig.from_dict(st["config"]))
        for block, (start, width) in film_columns(self.model_cfg).items():
            if f"{block}.dw.weight" in fits and block in old:  # kept its tensors: same width
                src = old[block][0]
                mine[:, start : start + width] = theirs[:, src : src + width]
                kept[start : start + width] = True
        return mine, kept

    def fix_film_columns(self, kept: torch.Tensor) -> None:
        """Keep the ``stage_film`` columns in ``kept`` (``[width]`` bool) where they are.

        The table is one tensor shared by borrowed and new blocks, so ``requires_grad`` cannot
        split it: the gradient of the kept columns is zeroed instead. Adam (no weight decay)
        then never moves them, its moments staying zero there.
        """
        self.film_kept = kept.to(self.device)
        learns = (~self.film_kept).to(self.net.stage_film.weight.dtype)
        self.net.stage_film.weight.register_hook(lambda grad: grad * learns)

    def export_snapshot(self) -> None:
        """Write ``step_N.pt`` (exported weights) and keep only the newest ``export_keep``."""
        dest = self.out / f"step_{self.prior_steps + self.step:06d}.pt"
        tmp = dest.with_suffix(".pt.tmp")
        torch.save({"state_dict": state_dict_cpu(self.net), **self.export_meta()}, tmp)
        os.replace(tmp, dest)
        for old in sorted(self.out.glob("step_*.pt"))[: -self.cfg.export_keep or None]:
            old.unlink()

    def export_meta(self, model_id: int = 0, name: str = "custom") -> dict:
        # Id 0: a run's exports are not a release, so no packet may claim a shipped model.
        return export_meta(self.state(), model_id, name)

    # -- steps ----------------------------------------------------------------------------------
    def batch(self) -> torch.Tensor:
        if self.train_tensors is not None:
            x = device_crops(self.train_tensors, self.cfg.batch_size, self.cfg.crop_px, self.rng)
        else:
            x = random_crops(self.train_images, self.cfg.batch_size, self.cfg.crop_px, self.rng)
            x = x.to(self.device)
        return x.contiguous(memory_format=torch.channels_last) if self.cfg.channels_last else x

    @torch.no_grad()
    def kmeans_init(self) -> None:
        zs = [self.net.analysis(self.batch()) for _ in range(self.cfg.kmeans_batches)]
        z = torch.cat([t.permute(0, 2, 3, 1).reshape(-1, t.shape[1]) for t in zs])
        self.net.rvq.init_kmeans(z.cpu(), seed=self.cfg.seed)
        self.kmeans_done = True

    def lr_at(self, step: int) -> float:
        cfg = self.cfg
        if step < cfg.warmup_steps:
            return cfg.lr * (step + 1) / cfg.warmup_steps
        if cfg.lr_clock == "wall":
            t = min(1.0, (time.perf_counter() - self.run_started) / cfg.max_wall_s)
        else:
            t = min(1.0, (step - cfg.warmup_steps) / max(1, cfg.steps - cfg.warmup_steps))
        return cfg.lr * (cfg.lr_floor + (1 - cfg.lr_floor) * 0.5 * (1 + math.cos(math.pi * t)))

    def autocast(self) -> contextlib.AbstractContextManager:
        if not self.cfg.bf16:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=torch.bfloat16)

    def reconstruct(
        self,
        x: torch.Tensor,
        received: torch.Tensor | None = None,
        depths: torch.Tensor | None = None,
        beam: bool = False,
    ):
        """Encode, quantize and decode ``x`` ``[B, 3, H, W]``.

        ``beam``: the beam search of ``cfg.beam_width`` paths picks the codes, not the nearest.

        Without ``depths``, every depth is decoded and ``recon`` is ``[S*B, 3, H, W]`` in
        depth-major order; with ``depths`` ``[B]`` (1..S), each sample is decoded once at its
        depth and ``recon`` is ``[B, 3, H, W]``.
        """
        net, s = self.net, self.model_cfg.num_stages
        with self.autocast():
            z = net.analysis(x).float()
        b, _d, h, w = z.shape
        if beam:
            indices = beam_indices(net, z.detach(), self.cfg.beam_width)
            codewords = net.rvq.lookup(indices)
        else:
            indices, codewords = net.quantize(z.detach())
        if received is None:
            received = torch.ones(b, s, h, w, dtype=torch.bool, device=z.device)
        if depths is None:
            masks = depth_masks(received)
            codewords_in = codewords.repeat(s, 1, 1, 1, 1)
            depths = torch.arange(1, s + 1, device=z.device).repeat_interleave(b)
            e = z.repeat(s, 1, 1, 1)
        else:
            masks = depth_mask(received, depths)
            codewords_in = codewords
            e = z
        latents = net.assemble_latent(codewords_in, masks)
        # Which reconstructions train the encoder (all, or full depth only), and how: the
        # added term is zero in value and carries the encoder's gradient.
        teach = (depths == s) if self.cfg.encoder_grad == "full" else torch.ones_like(depths)
        teach = teach.to(z.dtype)[:, None, None, None]
        if self.cfg.quantizer_grad == "rotation":
            moved = rotate_onto(e, latents) - latents.detach()
        else:  # straight-through: decoder gradients pass the quantizer unchanged
            moved = e - e.detach()
        latents = latents + teach * moved
        with self.autocast():
            recon = net.synthesis(latents, masks).float()
        return z, indices, codewords, recon

    def losses(
        self, x: torch.Tensor, recon: torch.Tensor, per_sample: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """L1, (1 - MS-SSIM) and chroma L1: per depth (``[S]``, ``recon`` depth-major
        ``[S*B, ...]``) or, with ``per_sample``, per reconstruction (``[len(recon)]``)."""
        s = len(recon) // len(x)
        target = x.repeat(s, 1, 1, 1)
        l1 = (recon - target).abs().flatten(1).mean(1)
        chroma_err = (recon - recon.mean(1, keepdim=True)) - (target - target.mean(1, keepdim=True))
        chroma = chroma_err.abs().flatten(1).mean(1)
        msssim = ms_ssim(
            recon.float().clamp(0, 1),
            target.float(),
            data_range=1.0,
            size_average=False,
            win_size=self.win,
        )
        if per_sample:
            return l1, 1 - msssim, chroma
        return tuple(v.view(s, -1).mean(1) for v in (l1, 1 - msssim, chroma))

    def mix(self, l1: torch.Tensor, dssim: torch.Tensor, chroma: torch.Tensor) -> torch.Tensor:
        """The training loss from :meth:`losses`' three terms, by the run's weights."""
        cfg = self.cfg
        return (1 - cfg.msssim_weight) * l1 + cfg.msssim_weight * dssim + cfg.chroma_weight * chroma

    def train_step(self) -> dict:
        cfg, net = self.cfg, self.net
        for group in self.opt.param_groups:
            group["lr"] = self.lr_at(self.step)
        x = self.batch()
        b = x.shape[0]
        h, w = x.shape[2] // 16, x.shape[3] // 16
        s = self.model_cfg.num_stages
        received = random_erasures(b, s, h, w, cfg.erasure_prob, cfg.erasure_max_rate, self.gen)
        depths = None
        if cfg.depth_sampling == "one":
            depths = sample_depths(b, self.weights, self.gen).to(self.device)
        beam = cfg.beam_width > 1 and float(torch.rand((), generator=self.gen)) < cfg.beam_share
        z, indices, codewords, recon = self.reconstruct(x, received.to(self.device), depths, beam)
        l1, dssim, chroma = self.losses(x, recon, per_sample=depths is not None)
        mix = self.mix(l1, dssim, chroma)
        if depths is None:
            distortion = (self.weights.to(l1.device) * mix).sum()
        else:
            # Depths were drawn with the weights already: a plain mean is the same expectation.
            distortion = mix.mean()
        zq = codewords.sum(1)
        commit = F.mse_loss(z, zq.detach())
        loss = distortion + cfg.commit_weight * commit
        if not net.rvq.uses_ema and "codebooks" not in self.frozen:
            loss = loss + net.rvq.code_loss
        gan_g = torch.zeros(())
        use_gan = self.disc is not None and self.step >= cfg.gan_start_step
        if use_gan:
            full = recon[-b:] if depths is None else recon
            gan_g = -self.disc(full).mean()
            loss = loss + cfg.gan_weight * gan_g
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
        self.opt.step()
        if use_gan:
            d_real = self.disc(x)
            d_fake = self.disc((recon[-b:] if depths is None else recon).detach())
            d_loss = F.relu(1 - d_real).mean() + F.relu(1 + d_fake).mean()
            self.disc_opt.zero_grad(set_to_none=True)
            d_loss.backward()
            self.disc_opt.step()

        # EMA codebook update on the residual each stage saw.
        zf = z.detach().permute(0, 2, 3, 1).reshape(-1, z.shape[1])
        cw = codewords.permute(1, 0, 3, 4, 2).reshape(s, -1, z.shape[1])
        before = torch.cat([torch.zeros_like(cw[:1]), cw.cumsum(0)[:-1]])
        residuals = zf[None] - before
        idx = indices.transpose(0, 1).reshape(s, -1)
        if "codebooks" in self.frozen or not net.rvq.uses_ema:
            revived = torch.zeros(s, dtype=torch.long)
        else:
            revived = net.rvq.ema_update(residuals, idx, cfg.dead_after_steps)
        idx = idx.cpu()
        for st in range(s):
            self.usage[st] += torch.bincount(idx[st], minlength=self.model_cfg.codebook_size)
        self.step += 1
        if depths is not None:
            # Per-depth means over the samples that drew each depth (None where none did).
            l1 = [
                float(l1.detach()[depths == k + 1].mean()) if (depths == k + 1).any() else None
                for k in range(s)
            ]
            dssim = [
                float(dssim.detach()[depths == k + 1].mean()) if (depths == k + 1).any() else None
                for k in range(s)
            ]
        else:
            l1, dssim = l1.tolist(), dssim.tolist()
        return {
            "loss": loss.item(),
            "commit": commit.item(),
            "code_loss": 0.0 if net.rvq.uses_ema else float(net.rvq.code_loss.detach()),
            "l1": l1,
            "dssim": dssim,
            "revived": revived.tolist(),
            "gan_g": float(gan_g.detach()),
        }

    @torch.no_grad()
    def validate(self) -> dict:
        self.net.eval()
        x = center_crops(self.val_images, self.val_crop).to(self.device)
        psnr, msssim, zs, cws = [], [], [], []
        for i in range(0, len(x), 8):
            xb = x[i : i + 8]
            z, _, codewords, recon = self.reconstruct(xb)
            zs.append(z)
            cws.append(codewords)
            s = self.model_cfg.num_stages
            target = xb.repeat(s, 1, 1, 1)
            recon = recon.clamp(0, 1)
            mse = (recon - target).pow(2).flatten(1).mean(1).view(s, -1)
            psnr.append(-10 * torch.log10(mse))
            win = msssim_window(self.val_crop)
            msssim.append(
                ms_ssim(recon, target, data_range=1.0, size_average=False, win_size=win).view(s, -1)
            )
        self.net.train()
        return {
            "val_psnr": torch.cat(psnr, 1).mean(1).tolist(),
            "val_msssim": torch.cat(msssim, 1).mean(1).tolist(),
            **latent_diagnostics(torch.cat(zs), torch.cat(cws)),
        }

    def codebook_usage(self) -> list[float]:
        used = (self.usage > 0).float().mean(1).tolist()
        self.usage.zero_()
        return used

    def run(self) -> None:
        cfg = self.cfg
        log = open(self.out / "log.jsonl", "a")
        if not self.kmeans_done:
            self.kmeans_init()
        bar = None
        if cfg.progress:
            from tqdm import tqdm

            bar = tqdm(total=cfg.steps, initial=self.step, dynamic_ncols=True, file=sys.stderr)
        self.net.train()
        started = self.run_started = time.perf_counter()
        while self.step < cfg.steps:
            if cfg.max_wall_s and time.perf_counter() - started >= cfg.max_wall_s:
                self.save()
                print(f"stopped at step {self.step}: --max-wall-s reached", file=sys.stderr)
                break
            t0 = time.perf_counter()
            stats = self.train_step()
            self.wall_s += time.perf_counter() - t0
            if bar is not None:
                bar.update(1)
                bar.set_postfix(loss=f"{stats['loss']:.4f}")
            record = {
                "step": self.step,
                "wall_s": round(self.wall_s, 1),
                "lr": self.lr_at(self.step),
            }
            if self.step % cfg.log_every == 0:
                record.update(stats)
                record["codebook_usage"] = self.codebook_usage()
            if self.step % cfg.val_every == 0 or self.step == cfg.steps:
                record.update(self.validate())
            if len(record) > 3:
                log.write(json.dumps(record) + "\n")
                log.flush()
            if self.step % cfg.ckpt_every == 0 or self.step == cfg.steps:
                self.save()
            if cfg.export_every and self.step % cfg.export_every == 0:
                self.export_snapshot()
        if cfg.export_every:
            self.export_snapshot()
        if bar is not None:
            bar.close()
        log.close()


def validate_weights(path: Path, data: str | Path, crop_px: int = 256) -> dict:
    """Validation figures of an exported weight file, as training logs them (fp32)."""
    from codec.zoo import load_codec  # checks the file and names what is wrong with it

    config = json.dumps(load_codec(path).config.to_dict())
    with tempfile.TemporaryDirectory(prefix="codec-validate-") as tmp:
        cfg = TrainConfig(data=str(data), out=tmp, crop_px=crop_px, config=config, progress=False)
        trainer = Trainer(cfg)
        trainer.init_from_weights(Path(path))
        return trainer.validate()
