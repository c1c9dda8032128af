"""The codec's quantizers: residual VQ with EMA codebooks (the shipped one) and with a
factorized, l2-normalised code lookup (DAC, arXiv 2306.06546, after ViT-VQGAN), plus the
rotation trick that can replace the straight-through estimator.

Both quantizers map flat latents ``[N, D]`` to indices ``[S, N]`` and per-stage codewords
``[S, N, D]`` and back, so the network and the bitstream do not know which one runs.

>>> _ = torch.manual_seed(0)
>>> rvq = FactorizedRVQ(num_stages=2, codebook_size=16, dim=8, code_dim=4)
>>> idx, cw = rvq.quantize(torch.randn(10, 8))
>>> tuple(idx.shape), tuple(cw.shape)
((2, 10), (2, 10, 8))
>>> looked_up = rvq.lookup(idx.T.reshape(1, 10, 2, 1).permute(0, 2, 1, 3))[0, :, :, :, 0]
>>> bool(torch.allclose(looked_up, cw.permute(0, 2, 1), atol=1e-6))  # the same up to rounding
True
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["FactorizedRVQ", "ResidualVQ", "rotate_onto"]


def rotate_onto(e: torch.Tensor, q: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """The rotation trick (arXiv 2410.06424): ``q``'s value, with ``e``'s gradient carried
    through the rotation and rescaling that take ``e`` to ``q``, instead of copied unchanged.

    ``e`` (the encoder's latent) and ``q`` (its quantization) are ``[B, D, h, w]``; the rotation
    is per position, over ``D``. The rotation and scale are constants to autograd, so a code's
    gradient turns with the angle between the latent and its code.

    >>> e = torch.randn(2, 4, 3, 3, requires_grad=True)
    >>> q = torch.randn(2, 4, 3, 3)
    >>> bool(torch.allclose(rotate_onto(e, q), q))
    True
    """
    q = q.detach()
    e_norm = e.detach().norm(dim=1, keepdim=True).clamp_min(eps)
    q_norm = q.norm(dim=1, keepdim=True)
    e_hat, q_hat = e.detach() / e_norm, q / q_norm.clamp_min(eps)
    r = e_hat + q_hat
    r = r / r.norm(dim=1, keepdim=True).clamp_min(eps)
    # (I - 2 r r^T + 2 q_hat e_hat^T) e, scaled by |q| / |e|: equal to q up to rounding.
    out = (q_norm / e_norm) * (
        e - 2 * (e * r).sum(1, keepdim=True) * r + 2 * (e * e_hat).sum(1, keepdim=True) * q_hat
    )
    return out + (q - out.detach())  # the forward value is q exactly


class ResidualVQ(nn.Module):
    """Residual vector quantizer with EMA codebooks, k-means init and dead-code revival.

    Stage ``s`` quantizes the residual left by stages ``0..s-1`` with its own codebook.
    Codebooks are learned by exponential moving averages of the vectors assigned to them, not by
    gradient, which keeps all 1024 codes alive far better on small data.
    """

    uses_ema = True

    def __init__(self, num_stages: int, codebook_size: int, dim: int, decay: float = 0.99) -> None:
        super().__init__()
        self.num_stages, self.codebook_size, self.dim, self.decay = (
            num_stages,
            codebook_size,
            dim,
            decay,
        )
        self.register_buffer("codebooks", torch.randn(num_stages, codebook_size, dim) * 0.1)
        self.register_buffer("ema_count", torch.ones(num_stages, codebook_size))
        self.register_buffer("ema_sum", self.codebooks.clone())
        # Training steps since each code was last chosen; drives dead-code revival.
        self.register_buffer("steps_unused", torch.zeros(num_stages, codebook_size))

    @staticmethod
    def _nearest(r: torch.Tensor, cb: torch.Tensor) -> torch.Tensor:
        # ||r - c||^2 without the ||r||^2 term, which does not change the argmin.
        return torch.addmm((cb * cb).sum(1), r, cb.t(), alpha=-2.0).argmin(1)

    def decoded_codes(self, s: int) -> torch.Tensor:
        """Stage ``s``'s codes in latent space ``[K, D]`` (what the decoder sums)."""
        return self.codebooks[s]

    def stage_code(self, s: int, residual: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Stage ``s``'s nearest code to each residual ``[N, D]``: (indices ``[N]``, codewords
        ``[N, D]``)."""
        idx = self._nearest(residual, self.codebooks[s])
        return idx, self.codebooks[s][idx]

    def quantize(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Flat latents ``[N, D]`` -> (indices ``[S, N]``, per-stage codewords ``[S, N, D]``)."""
        residual = z
        idx_all, cw_all = [], []
        for s in range(self.num_stages):
            idx, cw = self.stage_code(s, residual)
            residual = residual - cw
            idx_all.append(idx)
            cw_all.append(cw)
        return torch.stack(idx_all), torch.stack(cw_all)

    def lookup(self, indices: torch.Tensor) -> torch.Tensor:
        """Indices ``[B, S, h, w]`` -> codewords ``[B, S, D, h, w]``."""
        _b, s, _h, _w = indices.shape
        cws = [self.codebooks[i][indices[:, i]] for i in range(s)]  # each [B, h, w, D]
        return torch.stack(cws, 1).permute(0, 1, 4, 2, 3)

    @torch.no_grad()
    def init_kmeans(self, z: torch.Tensor, iters: int = 10, seed: int = 0) -> None:
        """Initialise every stage by k-means on the residuals of ``z`` ``[N, D]``."""
        gen = torch.Generator().manual_seed(seed)
        residual = z.float()
        for s in range(self.num_stages):
            cb = residual[torch.randperm(len(residual), generator=gen)[: self.codebook_size]]
            if len(cb) < self.codebook_size:
                extra = cb[torch.randint(len(cb), (self.codebook_size - len(cb),), generator=gen)]
                cb = torch.cat([cb, extra + 1e-3 * torch.randn(extra.shape, generator=gen)])
            for _ in range(iters):
                idx = self._nearest(residual, cb)
                counts = torch.bincount(idx, minlength=self.codebook_size).float()
                sums = torch.zeros_like(cb).index_add_(0, idx, residual)
                alive = counts > 0
                cb[alive] = sums[alive] / counts[alive, None]
                dead = (~alive).nonzero().flatten()
                if len(dead):
                    cb[dead] = residual[torch.randint(len(residual), (len(dead),), generator=gen)]
            self.codebooks[s] = cb
            self.ema_sum[s] = cb
            self.ema_count[s] = 1.0
            self.steps_unused[s] = 0
            residual = residual - cb[self._nearest(residual, cb)]

    @staticmethod
    def smoothed_count(ema_count: torch.Tensor) -> torch.Tensor:
        """Laplace-smoothed code counts ``[..., K]``: what each EMA sum is divided by."""
        n = ema_count.sum(-1, keepdim=True)
        return (ema_count + 1e-5) / (n + ema_count.shape[-1] * 1e-5) * n

    @staticmethod
    def derive_statistics(state: dict[str, torch.Tensor], prefix: str = "rvq.") -> None:
        """Fill ``ema_sum`` and ``steps_unused`` into a state dict that left them out.

        A packed weight file (:func:`codec.checkpoint.export_weights` with ``pack``) drops them:
        after every EMA step the codebook is ``ema_sum / smoothed_count``, so the sum follows
        from the codebook and the counts, and the dead-code timers restart at zero. Only a run
        continued from the file (``--init-weights``) reads either.
        """
        codebooks, counts = state[prefix + "codebooks"], state[prefix + "ema_count"]
        if prefix + "ema_sum" not in state:
            sums = codebooks.float() * ResidualVQ.smoothed_count(counts.float())[..., None]
            state[prefix + "ema_sum"] = sums.to(codebooks.dtype)
        state.setdefault(prefix + "steps_unused", torch.zeros_like(counts))

    @torch.no_grad()
    def ema_update(
        self, residuals: torch.Tensor, indices: torch.Tensor, dead_after_steps: int = 20
    ) -> torch.Tensor:
        """EMA step for every stage, then revive codes unused for ``dead_after_steps`` steps.

        ``residuals`` is ``[S, N, D]`` (the vector each stage saw), ``indices`` ``[S, N]``.
        Returns the number of revived codes per stage.
        """
        revived = torch.zeros(self.num_stages, dtype=torch.long)
        for s in range(self.num_stages):
            r, idx = residuals[s], indices[s]
            counts = torch.bincount(idx, minlength=self.codebook_size).float()
            sums = r.new_zeros(self.codebook_size, self.dim).index_add_(0, idx, r)
            self.ema_count[s].mul_(self.decay).add_(counts, alpha=1 - self.decay)
            self.ema_sum[s].mul_(self.decay).add_(sums, alpha=1 - self.decay)
            self.codebooks[s] = self.ema_sum[s] / self.smoothed_count(self.ema_count[s])[:, None]
            self.steps_unused[s] += 1
            self.steps_unused[s, counts > 0] = 0
            dead = (self.steps_unused[s] >= dead_after_steps).nonzero().flatten()
            if len(dead):
                # Restart dead codes on the worst-served vectors of this batch: they are where
                # a new code cuts the most error.
                err = (r - self.codebooks[s][idx]).pow(2).sum(1)
                worst = err.topk(min(len(r), 4 * len(dead))).indices
                pick = r[worst[torch.randint(len(worst), (len(dead),))]]
                pick = pick + 1e-3 * pick.std() * torch.randn_like(pick)
                mean_count = self.ema_count[s].mean()
                self.codebooks[s, dead] = pick
                self.ema_sum[s, dead] = pick * mean_count
                self.ema_count[s, dead] = mean_count
                self.steps_unused[s, dead] = 0
                revived[s] = len(dead)
        return revived


class FactorizedRVQ(nn.Module):
    """Residual VQ with a factorized, l2-normalised code lookup (DAC; ViT-VQGAN).

    Stage ``s`` projects its residual ``[N, D]`` to ``code_dim`` dimensions, picks the code of
    highest cosine similarity, and projects that code back to ``D``: in so few dimensions and
    compared by angle, codes spread over the sphere instead of crowding where the latent is
    dense, which is DAC's answer to dead codes. Codebooks and projections learn by gradient:
    while autograd records, :meth:`quantize` leaves in :attr:`code_loss` DAC's codebook loss
    (codes towards the projected residuals) plus a quarter of its commitment loss, and passes
    the decoder's gradient to the input projection straight through in code space.
    """

    uses_ema = False

    def __init__(self, num_stages: int, codebook_size: int, dim: int, code_dim: int) -> None:
        super().__init__()
        self.num_stages, self.codebook_size, self.dim, self.code_dim = (
            num_stages,
            codebook_size,
            dim,
            code_dim,
        )
        # nn.Linear's initialisation, one projection pair per stage
        self.in_proj = nn.Parameter(torch.empty(num_stages, code_dim, dim))
        self.out_proj = nn.Parameter(torch.empty(num_stages, dim, code_dim))
        for w in (*self.in_proj, *self.out_proj):
            nn.init.kaiming_uniform_(w, a=math.sqrt(5))
        self.in_bias = nn.Parameter(torch.zeros(num_stages, code_dim))
        self.out_bias = nn.Parameter(torch.zeros(num_stages, dim))
        self.codebooks = nn.Parameter(torch.randn(num_stages, codebook_size, code_dim))
        self.code_loss = torch.zeros(())

    def project_in(self, s: int, r: torch.Tensor) -> torch.Tensor:
        """Residuals ``[N, D]`` -> stage ``s``'s code space ``[N, code_dim]``."""
        return torch.addmm(self.in_bias[s], r, self.in_proj[s].t())

    def decoded_codes(self, s: int) -> torch.Tensor:
        """Stage ``s``'s codes in latent space ``[K, D]``."""
        return torch.addmm(self.out_bias[s], self.codebooks[s], self.out_proj[s].t())

    def _nearest(self, p: torch.Tensor, s: int) -> torch.Tensor:
        return (F.normalize(p, dim=1) @ F.normalize(self.codebooks[s], dim=1).t()).argmax(1)

    def stage_code(self, s: int, residual: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Stage ``s``'s code for each residual ``[N, D]`` (no gradient path): (indices ``[N]``,
        codewords in latent space ``[N, D]``)."""
        idx = self._nearest(self.project_in(s, residual), s)
        return idx, self.decoded_codes(s)[idx]

    def quantize(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Flat latents ``[N, D]`` -> (indices ``[S, N]``, per-stage codewords ``[S, N, D]``)."""
        residual = z
        idx_all, cw_all, losses = [], [], []
        for s in range(self.num_stages):
            p = self.project_in(s, residual)
            idx = self._nearest(p.detach(), s)
            c = self.codebooks[s][idx]
            if torch.is_grad_enabled():
                losses.append(F.mse_loss(c, p.detach()) + 0.25 * F.mse_loss(p, c.detach()))
                c = p + (c - p).detach()
            cw = torch.addmm(self.out_bias[s], c, self.out_proj[s].t())
            residual = residual - cw
            idx_all.append(idx)
            cw_all.append(cw)
        self.code_loss = torch.stack(losses).sum() if losses else z.new_zeros(())
        return torch.stack(idx_all), torch.stack(cw_all)

    def lookup(self, indices: torch.Tensor) -> torch.Tensor:
        """Indices ``[B, S, h, w]`` -> codewords ``[B, S, D, h, w]``."""
        s = indices.shape[1]
        cws = [self.decoded_codes(i)[indices[:, i]] for i in range(s)]  # each [B, h, w, D]
        return torch.stack(cws, 1).permute(0, 1, 4, 2, 3)

    @torch.no_grad()
    def init_kmeans(self, z: torch.Tensor, iters: int = 10, seed: int = 0) -> None:
        """Initialise every stage's codes by spherical k-means on its projected residuals of
        ``z`` ``[N, D]`` (the projections keep their random start)."""
        gen = torch.Generator().manual_seed(seed)
        residual = z.float()
        for s in range(self.num_stages):
            projected = self.project_in(s, residual)
            p, scale = F.normalize(projected, dim=1), projected.norm(dim=1).mean()
            cb = p[torch.randint(len(p), (self.codebook_size,), generator=gen)].clone()
            for _ in range(iters):
                idx = (p @ cb.t()).argmax(1)
                sums = torch.zeros_like(cb).index_add_(0, idx, p)
                alive = torch.bincount(idx, minlength=self.codebook_size) > 0
                cb[alive] = F.normalize(sums[alive], dim=1)
            self.codebooks[s] = cb * scale
            residual = residual - self.decoded_codes(s)[self._nearest(projected, s)]
