"""Encoder-side refinement: spend encode time to pick better indices for the same decoder.

The analysis transform gives a latent ``z`` in one pass, and the residual quantizer then picks,
stage after stage, the code nearest the remaining residual. ``refine_indices`` picks them for
the picture instead, one stage at a time: for stage ``k`` it takes ``effort`` Adam steps on the
latent, scoring the picture decoded from stages 1..k (1 - MS-SSIM, plus 0.1 · L1), with stages
before ``k`` fixed and stage ``k``'s code the nearest one to what is left, gradients passing it
straight through; then stage ``k``'s codes are fixed and the next stage starts from that latent.
Each preview depth is so optimised for itself, given what came before it, which is what a
receiver sees packet by packet. The bitstream and the decoder are unchanged: any receiver
decodes the result.

An earlier version optimised one latent for the mean loss over all depths at once and quantized
it at the end; at the same number of decoder passes the stage-by-stage search is ahead at every
depth on the validation images (model card, "Encoder-side refinement").

The last :data:`POLISH_STAGES` stages then get a second look at their codes themselves: each
position's :data:`POLISH_CANDIDATES` nearest codes compete through a softmax over them, ``effort``
more Adam steps on its logits, every step decoding the hard choice (the softmax's gradient passes
straight through), and the best hard choice seen is kept, so the polish never scores worse than
the nearest codes it starts from. The straight-through step on the latent moves codes only across
the nearest-code boundaries; the polish lets the decoder judge a handful of codes per position.

>>> import torch
>>> from codec.model import CodecConfig, ProgressiveCodec
>>> net = ProgressiveCodec(CodecConfig.tiny()).eval()
>>> x = torch.rand(1, 3, 32, 32)
>>> tuple(refine_indices(net, x, effort=2).shape)
(1, 2, 2, 2)
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from pytorch_msssim import ms_ssim

from codec.model import ProgressiveCodec

__all__ = [
    "MAX_EFFORT",
    "POLISH_CANDIDATES",
    "POLISH_STAGES",
    "REFINE_STEP_PER_RMS",
    "refine_indices",
]

# Adam's first step on z, as a share of the latent's RMS: models differ in latent scale (the
# first release's is about 30 RMS, v2's LayerNorm latent about 2.5), and a fixed step that helps
# one wrecks the other. Within each stage the step then decays along a cosine towards zero.
# Chosen on the validation images (never Kodak); see the model card.
REFINE_STEP_PER_RMS = 0.02
# Beyond this, quality no longer rises (measured) and the encode takes minutes per picture.
MAX_EFFORT = 100
L1_WEIGHT = 0.1
# The polish (module doc), chosen on the validation images (never Kodak; model card): the last
# two stages gained 0.0007 and 0.0010 at effort 8, where polishing every stage lost at four and
# five; in trials of the softmax alone, 8 candidates beat 4 and 16, and Adam's step of 0.5 on
# the logits beat 0.25, 1 and 2.
POLISH_STAGES = 2
POLISH_CANDIDATES = 8
POLISH_STEP = 0.5


def _msssim_window(height_px: int, width_px: int) -> int:
    # pytorch-msssim's 5 scales need the short side > (win - 1) * 16; 0 means "too small".
    win, short = 11, min(height_px, width_px)
    while (win - 1) * 16 >= short and win > 3:
        win -= 2
    return win if (win - 1) * 16 < short else 0


def _stage_code(
    net: ProgressiveCodec, k: int, residual: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Stage ``k``'s codes for a residual latent ``[1, D, h, w]``: (indices ``[1, h, w]``,
    codewords ``[1, D, h, w]``)."""
    b, d, h, w = residual.shape
    idx, cw = net.rvq.stage_code(k, residual.permute(0, 2, 3, 1).reshape(-1, d))
    return idx.reshape(b, h, w), cw.reshape(b, h, w, d).permute(0, 3, 1, 2)


def _loss(recon: torch.Tensor, target: torch.Tensor, win: int) -> torch.Tensor:
    loss = L1_WEIGHT * F.l1_loss(recon, target)
    if win:
        score = ms_ssim(recon.clamp(0, 1), target, data_range=1.0, win_size=win)
        loss = loss + (1 - score)
    return loss


def _polish(
    net: ProgressiveCodec,
    k: int,
    residual: torch.Tensor,
    fixed: torch.Tensor,
    received: torch.Tensor,
    target: torch.Tensor,
    win: int,
    steps: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Stage ``k``'s codes for ``residual`` ``[1, D, h, w]`` chosen among each position's
    nearest candidates by the decoded loss: (indices ``[1, h, w]``, codewords ``[1, D, h, w]``)."""
    b, d, h, w = residual.shape
    h_px, w_px = target.shape[2:]
    book = net.rvq.decoded_codes(k).detach().float()
    flat = residual.detach().permute(0, 2, 3, 1).reshape(-1, d)
    dist, cand = torch.cdist(flat, book).topk(min(POLISH_CANDIDATES, len(book)), largest=False)
    options = book[cand]  # [positions, candidates, D]
    # Start from the nearest code, as sure of it as the spread of distances says.
    logits = (-dist.pow(2) / (dist[:, :1].pow(2).mean() + 1e-12)).requires_grad_(True)
    opt = torch.optim.Adam([logits], lr=POLISH_STEP)
    rows = torch.arange(len(cand))

    def decode(pick: torch.Tensor) -> torch.Tensor:
        code = pick.reshape(b, h, w, d).permute(0, 3, 1, 2)
        return net.synthesis(fixed + code, received)[:, :, :h_px, :w_px]

    best, best_choice = None, None
    with torch.enable_grad():
        for step in range(steps + 1):  # the last pass only scores the last step's choice
            soft = logits.softmax(-1)
            choice = soft.argmax(-1)
            hard = F.one_hot(choice, soft.shape[-1]).to(soft.dtype)
            loss = _loss(decode(((hard + soft - soft.detach())[..., None] * options).sum(1)),
                         target, win)  # fmt: skip
            if best is None or loss.item() < best:
                best, best_choice = loss.item(), choice.detach()
            if step == steps:
                break
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    idx = cand[rows, best_choice]
    return idx.reshape(b, h, w), book[idx].reshape(b, h, w, d).permute(0, 3, 1, 2)


def refine_indices(
    net: ProgressiveCodec,
    x: torch.Tensor,
    effort: int,
    size_px: tuple[int, int] | None = None,
    step_per_rms: float = REFINE_STEP_PER_RMS,
) -> torch.Tensor:
    """Indices ``[1, S, h, w]`` (int64) for image ``x`` ``[1, 3, H, W]`` (padded to the grid).

    ``size_px`` is the (height, width) of the real picture inside the padding; the loss looks
    only there. ``effort`` is the number of Adam steps per stage (each one decoder pass with
    gradients), and as many again for the polish of the last two stages' codes; 0 gives the
    plain encoder's indices. Adam's step starts at ``step_per_rms``
    times the latent's RMS and decays along a cosine within each stage. Deterministic on one
    machine: no random draws, fixed step count.
    """
    if not 0 <= effort <= MAX_EFFORT:
        raise ValueError(f"effort must be in 0..{MAX_EFFORT}, got {effort}")
    with torch.no_grad():
        z = net.analysis(x)
        if effort == 0:
            return net.quantize(z)[0]
    h_px, w_px = size_px or (x.shape[2], x.shape[3])
    target = x[:, :, :h_px, :w_px]
    s = net.config.num_stages
    win = _msssim_window(h_px, w_px)
    lr = step_per_rms * float(z.pow(2).mean().sqrt())
    fixed = torch.zeros_like(z)  # the codewords of the stages already chosen
    chosen = []
    # Only z is optimised; the network's own weights must not collect gradients.
    params = [p.requires_grad for p in net.parameters()]
    for p in net.parameters():
        p.requires_grad_(False)
    try:
        for k in range(s):
            received = torch.zeros(1, s, *z.shape[2:], dtype=torch.bool)
            received[:, : k + 1] = True
            z = z.detach().clone().requires_grad_(True)
            opt = torch.optim.Adam([z], lr=lr)
            with torch.enable_grad():
                for step in range(effort):
                    # Large moves first, then settling: the last steps only fine-tune the
                    # choice of codes near their boundaries.
                    opt.param_groups[0]["lr"] = lr * 0.5 * (1 + math.cos(math.pi * step / effort))
                    _, code = _stage_code(net, k, z.detach() - fixed)
                    latent = fixed + code + (z - z.detach())  # straight-through past stage k
                    recon = net.synthesis(latent, received)[:, :, :h_px, :w_px]
                    loss = _loss(recon, target, win)
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    opt.step()
            if k >= s - POLISH_STAGES:
                idx, code = _polish(
                    net, k, z.detach() - fixed, fixed, received, target, win, effort
                )
            else:
                with torch.no_grad():
                    idx, code = _stage_code(net, k, z - fixed)
            fixed = fixed + code
            chosen.append(idx)
    finally:
        for p, flag in zip(net.parameters(), params, strict=True):
            p.requires_grad_(flag)
    return torch.stack(chosen, 1)
