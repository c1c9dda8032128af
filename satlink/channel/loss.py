"""Loss and bit-error models, vectorised: the link draws their decisions a chunk at a time.

Every model advances once per message on the wire (not per second), and takes an explicit numpy
``Generator``, so the same seed gives the same decisions.

>>> import numpy as np
>>> from satlink.channel.config import LossConfig
>>> process = loss_process(LossConfig("bernoulli", p=0.5), np.random.default_rng(0))
>>> lost, bad = process.draw(4)
>>> lost.tolist(), bad.tolist()
([False, True, True, True], [False, False, False, False])
>>> round(packet_error_rate(2880, 1e-5), 5)  # a 360-byte message at a BER of 1e-5
0.02839
>>> payload, flips = flip_bits(bytes(360), 1e-3, np.random.default_rng(1))
>>> flips, sum(bin(b).count("1") for b in payload)
(3, 3)
"""

from __future__ import annotations

import math
from typing import Protocol

import numpy as np

from satlink.channel.config import LossConfig

__all__ = [
    "Bernoulli",
    "GilbertElliott",
    "LossProcess",
    "NoLoss",
    "TimedChain",
    "flip_bits",
    "flip_error_events",
    "loss_process",
    "packet_error_rate",
]


class LossProcess(Protocol):
    """What the link asks of an erasure model: ``n`` loss decisions and bad-state flags."""

    def draw(self, n: int) -> tuple[np.ndarray, np.ndarray]: ...


class Bernoulli:
    """Independent losses with probability ``p``.

    >>> lost, bad = Bernoulli(0.5, np.random.default_rng(0)).draw(4)
    >>> lost.tolist()
    [False, True, True, True]
    """

    def __init__(self, p: float, rng: np.random.Generator) -> None:
        self.p = p
        self.rng = rng

    def draw(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        """``n`` loss decisions and (all-False) bad-state flags."""
        return self.rng.random(n) < self.p, np.zeros(n, dtype=bool)


class GilbertElliott:
    """Two-state Markov loss; the chain carries over between :meth:`draw` calls.

    Vectorised by sojourns: a run in one state lasts Geometric(leave probability) steps, so the
    state sequence is ``np.repeat`` of alternating run lengths. Because the geometric law is
    memoryless, a run cut at the end of a chunk continues correctly in the next one.

    >>> ge = GilbertElliott(0.05, 0.5, 0.0, 1.0, np.random.default_rng(3))
    >>> lost, bad = ge.draw(100_000)
    >>> round(float(lost.mean()), 3)
    0.091
    """

    def __init__(
        self, p: float, r: float, loss_good: float, loss_bad: float, rng: np.random.Generator
    ) -> None:
        self.p, self.r = p, r
        self.loss_good, self.loss_bad = loss_good, loss_bad
        self.rng = rng
        # start in the stationary distribution, so short runs are not biased towards "good"
        pi_bad = p / (p + r) if p + r > 0 else 0.0
        self.bad = bool(rng.random() < pi_bad)

    def _states(self, n: int) -> np.ndarray:
        out = np.empty(n, dtype=bool)
        pos = 0
        rng = self.rng
        mean_cycle = (1.0 / self.p if self.p > 0 else n) + (1.0 / self.r if self.r > 0 else n)
        while pos < n:
            rem = n - pos
            k = int(rem / mean_cycle * 1.2) + 8  # cycles of (this state, other state)
            q_this = self.r if self.bad else self.p  # probability of leaving each state
            q_other = self.p if self.bad else self.r
            lens = np.empty(2 * k, dtype=np.int64)
            lens[0::2] = rng.geometric(q_this, k) if q_this > 0 else rem + 1  # never leaves
            lens[1::2] = rng.geometric(q_other, k) if q_other > 0 else rem + 1
            # clip to rem + 1: a clipped run still overruns the chunk, so it is treated as cut
            # (and continues in the next chunk: memoryless, still exact) rather than as ending
            np.minimum(lens, rem + 1, out=lens)
            vals = np.empty(2 * k, dtype=bool)
            vals[0::2] = self.bad
            vals[1::2] = not self.bad
            ends = np.cumsum(lens)
            if ends[-1] < rem:  # all runs complete: next state is this one again
                out[pos : pos + ends[-1]] = np.repeat(vals, lens)
                pos += int(ends[-1])
                continue
            j = int(np.searchsorted(ends, rem))  # the run that reaches the end of the chunk
            out[pos:] = np.repeat(vals[: j + 1], lens[: j + 1])[:rem]
            # a run ending exactly at the chunk end hands over to the other state
            self.bad = (not vals[j]) if ends[j] == rem else bool(vals[j])
            pos = n
        return out

    def draw(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        """``n`` loss decisions and the bad-state flag of each."""
        bad = self._states(n)
        u = self.rng.random(n)
        lost = np.where(bad, u < self.loss_bad, u < self.loss_good)
        return lost, bad


class NoLoss:
    """The lossless model, drawn like the others so the link needs no special case.

    >>> NoLoss().draw(2)[0].tolist()
    [False, False]
    """

    def draw(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        """``n`` (all-False) loss decisions and bad-state flags."""
        z = np.zeros(n, dtype=bool)
        return z, z


def loss_process(cfg: LossConfig, rng: np.random.Generator) -> LossProcess:
    """The erasure process for ``cfg``; the budget models (``budget-per``, ``bit-errors``)
    depend on the elevation of each message, so the link decides those itself, and for them
    this is :class:`NoLoss`."""
    if cfg.model == "bernoulli":
        return Bernoulli(cfg.p, rng)
    if cfg.model == "gilbert-elliott":
        return GilbertElliott(cfg.p, cfg.r, cfg.loss_good, cfg.loss_bad, rng)
    return NoLoss()


def packet_error_rate(bits: int, ber: float) -> float:
    """Probability that a message of ``bits`` bits has at least one bit error at ``ber``."""
    # expm1/log1p keep the precision of 1 - (1 - ber)**bits when ber is tiny
    return -math.expm1(bits * math.log1p(-ber)) if ber < 1.0 else 1.0


def flip_bits(payload: bytes, ber: float, rng: np.random.Generator) -> tuple[bytes, int]:
    """``payload`` with Binomial(bits, ber) distinct bits flipped, and how many were flipped.

    The flips are real, so the receiver's CRC decides whether the copy is corrupt.
    """
    bits = 8 * len(payload)
    flips = int(rng.binomial(bits, min(1.0, ber)))
    if flips:
        positions = rng.choice(bits, size=flips, replace=False)
        mask = np.zeros(bits, dtype=np.uint8)
        mask[positions] = 1
        # one XOR with a packed mask, vectorised, rather than a Python loop over bits
        payload = (np.frombuffer(payload, dtype=np.uint8) ^ np.packbits(mask)).tobytes()
    return payload, flips


class TimedChain:
    """A two-state (good/bad) Markov chain that advances by elapsed *steps*, real-valued, so a
    chain stepping once per ``step_s`` seconds can be read at any time: waiting out a burst
    helps. ``p`` = P(good->bad) and ``r`` = P(bad->good) per step; after n steps
    P(bad | bad) = pi + (1 - pi) lam^n and P(bad | good) = pi (1 - lam^n), pi = p / (p + r),
    lam = 1 - p - r (exact for whole n; for fractional n with lam < 0 the oscillating part is
    dropped). It starts in the stationary distribution.

    >>> ch = TimedChain(0.1, 0.4, u0=0.5)
    >>> ch.bad, ch.advance(1.0, 0.05), ch.advance(0.0, 0.99)
    (False, True, True)
    """

    def __init__(self, p: float, r: float, u0: float) -> None:
        self.p, self.r = p, r
        self.pi_bad = p / (p + r) if p + r > 0 else 0.0
        self.lam = 1.0 - p - r
        self.bad = u0 < self.pi_bad

    def advance(self, steps: float, u: float) -> bool:
        """The state after ``steps`` more steps, drawn with the uniform ``u``."""
        if steps <= 0.0:
            return self.bad
        lam = self.lam
        if lam < 0.0 and steps != int(steps):
            lam_n = 0.0
        else:
            lam_n = lam**steps
        if self.bad:
            p_bad = self.pi_bad + (1.0 - self.pi_bad) * lam_n
        else:
            p_bad = self.pi_bad * (1.0 - lam_n)
        self.bad = u < p_bad
        return self.bad


def flip_error_events(
    payload: bytes, event_rate: float, bits_per_event: float, rng: np.random.Generator
) -> tuple[bytes, int]:
    """``payload`` with decoder error events: Binomial(bits, event_rate) events, each flipping
    1 + Poisson(bits_per_event - 1) distinct bits within twice that span from its start (a
    Viterbi burst). Returns the bytes and the number of bits flipped.

    >>> out, n = flip_error_events(bytes(360), 1e-3, 4.0, np.random.default_rng(2))
    >>> n == sum(bin(b).count("1") for b in out), n > 0
    (True, True)
    """
    bits = 8 * len(payload)
    events = int(rng.binomial(bits, min(1.0, event_rate)))
    if not events:
        return payload, 0
    mask = np.zeros(bits, dtype=np.uint8)
    starts = rng.integers(0, bits, size=events)
    sizes = 1 + rng.poisson(max(0.0, bits_per_event - 1.0), size=events)
    for start, k in zip(starts.tolist(), sizes.tolist(), strict=True):
        span = min(bits - start, max(k, 2 * k))
        k = min(k, span)
        mask[start + rng.choice(span, size=k, replace=False)] = 1
    flips = int(mask.sum())
    payload = (np.frombuffer(payload, dtype=np.uint8) ^ np.packbits(mask)).tobytes()
    return payload, flips
