"""The progressive RVQ codec network, after ProGIC (arXiv 2603.02897).

Analysis: pixel-unshuffle stem, depthwise-separable conv + FFN blocks (ReLU), downsampling by
pixel-unshuffle, small self-attention only at 1/16 resolution, projection to the latent.
Quantizer: residual VQ, one codebook per stage (:mod:`codec.quantizer`).
Synthesis: the mirror image, with every block modulated by a scale and bias chosen by how many
stages are present, and told per position which indices arrived, so that holes decode gracefully.

>>> net = ProgressiveCodec(CodecConfig.tiny())
>>> x = torch.rand(1, 3, 32, 32)
>>> indices = net.encode_indices(x)
>>> tuple(indices.shape)
(1, 2, 2, 2)
>>> net.decode_indices(indices).shape
torch.Size([1, 3, 32, 32])
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

import torch
import torch.nn.functional as F
from torch import nn

from codec.quantizer import FactorizedRVQ, ResidualVQ


@dataclass(frozen=True)
class CodecConfig:
    """Shape of the network. The shipped model uses the defaults."""

    num_stages: int = 5
    codebook_size: int = 1024
    latent_dim: int = 64
    # Channels per resolution level, from 1/4 down to 1/16 (encoder) and back up (decoder).
    enc_channels: tuple[int, ...] = (64, 128, 192)
    enc_depths: tuple[int, ...] = (1, 2, 2)
    dec_channels: tuple[int, ...] = (256, 128, 96, 48)  # 1/16, 1/8, 1/4, 1/2
    dec_depths: tuple[int, ...] = (3, 2, 2, 1)
    attn_heads: int = 4
    ffn_ratio: int = 2
    kernel_size: int = 3
    # Channel LayerNorm on the latent before the RVQ (codec v2): keeps the latent's scale fixed
    # for the codebooks instead of letting the encoder shrink it into a few directions.
    latent_norm: bool = False
    # GroupNorm(1, C) after each encoder block's depthwise conv (an ablation of issue 12; the
    # decoder stays without: it runs after every packet and is memory-bound).
    enc_block_norm: bool = False
    # 0: EMA codebooks in the latent's own dimensions (the shipped models); > 0: codes compared
    # by angle in this many projected dimensions and learned by gradient (DAC's factorized
    # lookup, an ablation of issue 12).
    code_dim: int = 0

    @property
    def downsample(self) -> int:
        return 4 * 2 ** (len(self.enc_channels) - 1)

    @property
    def bits_per_index(self) -> int:
        return max(1, (self.codebook_size - 1).bit_length())

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> CodecConfig:
        """Inverse of :meth:`to_dict`; unknown keys are refused by name.

        >>> CodecConfig.from_dict({"latent_dim": 32}).latent_dim
        32
        """
        d = dict(d)
        # Weights exported before 2026-11-22 carry an always-empty "extra" field.
        if d.get("extra") == {}:
            del d["extra"]
        unknown = sorted(set(d) - {f.name for f in fields(cls)})
        if unknown:
            known = ", ".join(f.name for f in fields(cls))
            raise ValueError(f"unknown CodecConfig key(s) {unknown}; known keys: {known}")
        for key in ("enc_channels", "enc_depths", "dec_channels", "dec_depths"):
            if key in d:
                d[key] = tuple(d[key])
        return cls(**d)

    @classmethod
    def tiny(cls) -> CodecConfig:
        """A few-thousand-parameter model for tests: 2 stages of 16 codes, 1/16 latent."""
        return cls(
            num_stages=2,
            codebook_size=16,
            latent_dim=8,
            enc_channels=(8, 12, 16),
            enc_depths=(1, 1, 1),
            dec_channels=(16, 12, 8, 8),
            dec_depths=(1, 1, 1, 1),
            attn_heads=2,
        )


class DSBlock(nn.Module):
    """Depthwise conv, optional FiLM, then a pointwise ReLU FFN; residual.

    No normalisation layer by default: on CPU a channel LayerNorm costs as much as the convs
    (``norm`` adds a GroupNorm after the depthwise conv, for the encoder ablation). The last
    pointwise layer starts near zero so each block starts as identity and training stays stable.
    """

    def __init__(self, channels: int, ffn_ratio: int, kernel_size: int, norm: bool = False) -> None:
        super().__init__()
        self.dw = nn.Conv2d(
            channels, channels, kernel_size, padding=kernel_size // 2, groups=channels
        )
        self.norm = nn.GroupNorm(1, channels) if norm else None
        self.pw1 = nn.Conv2d(channels, channels * ffn_ratio, 1)
        self.pw2 = nn.Conv2d(channels * ffn_ratio, channels, 1)
        nn.init.normal_(self.pw2.weight, std=1e-3)
        nn.init.zeros_(self.pw2.bias)

    def forward(self, x: torch.Tensor, film: torch.Tensor | None = None) -> torch.Tensor:
        if (
            film is not None
            and self.norm is None
            and len(film) == 1
            and not torch.is_grad_enabled()
        ):
            # One picture at inference: fold the FiLM scale and bias into the depthwise
            # filter (per channel), which saves a pass over the block's largest tensor.
            scale, bias = film[0, :, 0, 0].chunk(2)
            gain = 1 + scale
            weight = self.dw.weight * gain[:, None, None, None]
            y = F.conv2d(
                x,
                weight,
                torch.addcmul(bias, self.dw.bias, gain),
                padding=self.dw.padding,
                groups=self.dw.groups,
            )
        else:
            y = self.dw(x)
            if self.norm is not None:
                y = self.norm(y)
            if film is not None:
                scale, bias = film.chunk(2, dim=1)
                y = torch.addcmul(bias, y, 1 + scale)
        # In place: these tensors are the largest in the network and the decoder is
        # memory-bound at full resolution; ReLU's backward needs only its output.
        return self.pw2(F.relu_(self.pw1(y))).add_(x)


class Attention(nn.Module):
    """Global multi-head self-attention over the 1/16 grid (~1.5k tokens at 768×512)."""

    def __init__(self, channels: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.qkv = nn.Conv2d(channels, 3 * channels, 1)
        self.proj = nn.Conv2d(channels, channels, 1)
        nn.init.normal_(self.proj.weight, std=1e-3)
        nn.init.zeros_(self.proj.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        q, k, v = self.qkv(x).reshape(b, 3, self.heads, c // self.heads, h * w).unbind(1)
        out = F.scaled_dot_product_attention(
            q.transpose(-1, -2), k.transpose(-1, -2), v.transpose(-1, -2)
        )
        return x + self.proj(out.transpose(-1, -2).reshape(b, c, h, w))


def fill_missing(values: torch.Tensor, known: torch.Tensor, max_iters: int = 64) -> torch.Tensor:
    """Fill unknown positions of ``values`` ``[B, D, h, w]`` from their known neighbours.

    Repeated 3×3 normalised averaging: each pass fills the positions that touch a known one, so a
    hole of radius r closes after r passes. Positions with no known value anywhere stay zero.
    """
    known = known.to(values.dtype)[:, None]
    if bool(known.all()):
        return values
    out = values * known
    kernel = values.new_ones(1, 1, 3, 3)
    for _ in range(max_iters):
        if bool(known.all()):
            break
        b, d, h, w = out.shape
        summed = F.conv2d(out.reshape(b * d, 1, h, w), kernel, padding=1).reshape(b, d, h, w)
        weight = F.conv2d(known, kernel, padding=1)
        newly = (weight > 0) & (known == 0)
        out = torch.where(newly, summed / weight.clamp_min(1), out)
        known = torch.maximum(known, newly.to(known.dtype))
    return out


def film_columns(cfg: CodecConfig) -> dict[str, tuple[int, int]]:
    """Where each synthesis block's (scale, bias) pair sits in ``stage_film``'s rows.

    Keyed by the block's module name; the value is ``(first column, width)``, the width being
    twice the block's channels. It lets weights move between decoders of different depths.

    >>> film_columns(CodecConfig(dec_channels=[8, 4], dec_depths=[1, 2]))
    {'dec_levels.0.0': (0, 16), 'dec_levels.1.0': (16, 8), 'dec_levels.1.1': (24, 8)}
    """
    columns, offset = {}, 0
    for i, (ch, depth) in enumerate(zip(cfg.dec_channels, cfg.dec_depths, strict=True)):
        for j in range(depth):
            columns[f"dec_levels.{i}.{j}"] = (offset, 2 * ch)
            offset += 2 * ch
    return columns


class ProgressiveCodec(nn.Module):
    """Analysis transform, residual VQ and stage-modulated synthesis transform."""

    def __init__(self, config: CodecConfig) -> None:
        super().__init__()
        self.config = cfg = config
        # Analysis: 1/4 stem, then pixel-unshuffle downsampling to 1/16.
        self.stem = nn.Conv2d(3 * 16, cfg.enc_channels[0], 1)
        self.enc_levels = nn.ModuleList()
        self.enc_down = nn.ModuleList()
        for i, (ch, depth) in enumerate(zip(cfg.enc_channels, cfg.enc_depths, strict=True)):
            if i > 0:
                self.enc_down.append(nn.Conv2d(4 * cfg.enc_channels[i - 1], ch, 1))
            self.enc_levels.append(
                nn.ModuleList(
                    DSBlock(ch, cfg.ffn_ratio, cfg.kernel_size, cfg.enc_block_norm)
                    for _ in range(depth)
                )
            )
        self.enc_attn = Attention(cfg.enc_channels[-1], cfg.attn_heads)
        self.to_latent = nn.Conv2d(cfg.enc_channels[-1], cfg.latent_dim, 1)
        self.latent_ln = nn.LayerNorm(cfg.latent_dim) if cfg.latent_norm else None

        shape = (cfg.num_stages, cfg.codebook_size, cfg.latent_dim)
        self.rvq: ResidualVQ | FactorizedRVQ
        self.rvq = FactorizedRVQ(*shape, cfg.code_dim) if cfg.code_dim else ResidualVQ(*shape)

        # Synthesis: latent + received-mask channels in, pixel-shuffle upsampling to full size.
        self.from_latent = nn.Conv2d(cfg.latent_dim + cfg.num_stages, cfg.dec_channels[0], 1)
        self.dec_attn = Attention(cfg.dec_channels[0], cfg.attn_heads)
        self.dec_levels = nn.ModuleList()
        self.dec_up = nn.ModuleList()
        film_width = 0
        for i, (ch, depth) in enumerate(zip(cfg.dec_channels, cfg.dec_depths, strict=True)):
            self.dec_levels.append(
                nn.ModuleList(DSBlock(ch, cfg.ffn_ratio, cfg.kernel_size) for _ in range(depth))
            )
            film_width += 2 * ch * depth
            out_ch = cfg.dec_channels[i + 1] if i + 1 < len(cfg.dec_channels) else 3
            self.dec_up.append(nn.Conv2d(ch, 4 * out_ch, 1))
        # One (scale, bias) pair per block and channel, chosen by the number of stages present.
        self.stage_film = nn.Embedding(cfg.num_stages, film_width)
        nn.init.zeros_(self.stage_film.weight)

    # -- analysis -------------------------------------------------------------------------------
    def analysis(self, x: torch.Tensor) -> torch.Tensor:
        """Image ``[B, 3, H, W]`` in [0, 1], sides multiples of 16 -> ``[B, D, H/16, W/16]``."""
        h = self.stem(F.pixel_unshuffle(x - 0.5, 4))
        for i, blocks in enumerate(self.enc_levels):
            if i > 0:
                h = self.enc_down[i - 1](F.pixel_unshuffle(h, 2))
            for block in blocks:
                h = block(h)
        z = self.to_latent(self.enc_attn(h))
        if self.latent_ln is not None:
            z = self.latent_ln(z.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
        return z

    def quantize(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Latent ``[B, D, h, w]`` -> (indices ``[B, S, h, w]``, codewords ``[B, S, D, h, w]``)."""
        b, d, h, w = z.shape
        flat = z.permute(0, 2, 3, 1).reshape(-1, d)
        idx, cw = self.rvq.quantize(flat)
        s = idx.shape[0]
        indices = idx.reshape(s, b, h, w).transpose(0, 1)
        codewords = cw.reshape(s, b, h, w, d).permute(1, 0, 4, 2, 3)
        return indices, codewords

    # -- synthesis ------------------------------------------------------------------------------
    def assemble_latent(self, codewords: torch.Tensor, received: torch.Tensor) -> torch.Tensor:
        """Sum received codewords; fill holes in stage 1 from neighbouring stage-1 codewords.

        ``codewords`` ``[B, S, D, h, w]``; ``received`` bool ``[B, S, h, w]``.
        A missing index at a later stage contributes nothing.
        """
        base = fill_missing(codewords[:, 0], received[:, 0])
        rest = (codewords[:, 1:] * received[:, 1:, None].to(codewords.dtype)).sum(1)
        return base + rest

    def synthesis(self, latent: torch.Tensor, received: torch.Tensor) -> torch.Tensor:
        """Latent ``[B, D, h, w]`` and mask ``[B, S, h, w]`` -> image ``[B, 3, 16h, 16w]``."""
        cfg = self.config
        mask = received.to(latent.dtype)
        # Stage count for the modulation: the deepest stage that has anything at all.
        present = received.flatten(2).any(-1)  # [B, S]
        ranks = torch.arange(1, cfg.num_stages + 1, device=latent.device)
        depth = (present * ranks).amax(1).clamp_min(1) - 1
        films = self.stage_film(depth)[:, :, None, None]
        offset = 0
        h = self.dec_attn(self.from_latent(torch.cat([latent, mask], 1)))
        for i, blocks in enumerate(self.dec_levels):
            ch = cfg.dec_channels[i]
            for block in blocks:
                h = block(h, films[:, offset : offset + 2 * ch])
                offset += 2 * ch
            h = F.pixel_shuffle(self.dec_up[i](h), 2)
        return h + 0.5

    # -- convenience ----------------------------------------------------------------------------
    def encode_indices(self, x: torch.Tensor) -> torch.Tensor:
        return self.quantize(self.analysis(x))[0]

    def decode_indices(
        self, indices: torch.Tensor, received: torch.Tensor | None = None
    ) -> torch.Tensor:
        if received is None:
            received = torch.ones_like(indices, dtype=torch.bool)
        codewords = self.rvq.lookup(indices.long())
        return self.synthesis(self.assemble_latent(codewords, received), received)

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())
