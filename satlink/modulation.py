"""Bit and message error rates of the modulation and coding schemes a link budget can name.

Uncoded BPSK/QPSK: BER = ½ erfc(√(Eb/N0)), bit errors independent, so a message of n bits is
lost with PER = 1 − (1 − BER)^n.

Convolutional codes do not make independent errors: the Viterbi decoder's errors come in
*error events*, each a short burst of several wrong bits (CCSDS 130.1-G, "TM Synchronization and
Channel Coding — Summary of Concept and Rationale", §3: frame error rates cannot be derived
from the BER as if bits failed independently). For the CCSDS K=7 r=½ code this module uses the
error-event model: the mean number of bit errors per event is the ratio of the union-bound sums

    b̄(Eb/N0) = Σ c_d P_d / Σ a_d P_d,   P_d = Q(√(2 d R Eb/N0)),

over the code's distance spectrum (a_d paths and c_d information-bit errors at output distance
d; :data:`CONV_K7_SPECTRUM`, which the tests re-derive by enumerating the 64-state trellis), the
event rate per information bit is BER / b̄, and a message of n bits is lost with probability
1 − (1 − BER/b̄)^n. At 4.4 dB (BER 1e-5) b̄ ≈ 4.0, so a 2,880-bit message has PER ≈ 0.72%
instead of the 2.8% the independent-bit formula gives.

>>> round(bits_per_error_event(4.4, "bpsk-conv-k7-r1/2"), 2)
3.99
>>> round(message_error_rate(4.4, 2880, "bpsk-conv-k7-r1/2"), 4)
0.0072
>>> round(message_error_rate(9.6, 2880, "bpsk"), 4)
0.0277
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from satlink.config import LinkBudgetError, check_choice, check_real

__all__ = [
    "CODED_BER_TABLES",
    "CONV_K7_SPECTRUM",
    "EVENT_MODULATIONS",
    "MODULATIONS",
    "UNCODED_MODULATIONS",
    "ber_for_ebn0",
    "bits_per_error_event",
    "message_error_rate",
    "packet_error_rate",
    "required_ebn0_db",
]

# Coded schemes: BER after decoding versus Eb/N0 (dB), interpolated linearly in log10(BER).
# Approximate points read off the usual published curves (soft-decision Viterbi for the CCSDS
# K=7 r=1/2 code; CCSDS RS(255,223)+K=7 concatenation, interleaving depth 5; CCSDS turbo r=1/3,
# 8920-bit frames; see CCSDS 130.1-G "TM Synchronization and Channel Coding - Summary of Concept
# and Rationale"). Good to a few tenths of a dB; set required_ebn0_db to use a datasheet figure.
CODED_BER_TABLES: dict[str, tuple[tuple[float, float], ...]] = {
    "bpsk-conv-k7-r1/2": (
        (0.0, 1e-1),
        (1.0, 3e-2),
        (2.0, 4e-3),
        (3.0, 3e-4),
        (4.0, 2.5e-5),
        (4.4, 1e-5),
        (5.0, 1.5e-6),
        (6.0, 5e-8),
        (7.0, 1e-9),
    ),
    "bpsk-rs255-conv-k7": (
        (1.0, 8e-2),
        (1.5, 3e-2),
        (2.0, 2e-3),
        (2.25, 1e-4),
        (2.5, 2e-6),
        (2.75, 1e-8),
        (3.0, 1e-10),
    ),
    "bpsk-turbo-r1/3": (
        (0.0, 8e-2),
        (0.3, 3e-2),
        (0.5, 3e-3),
        (0.7, 5e-5),
        (0.9, 2e-6),
        (1.2, 2e-7),
        (1.5, 5e-8),
    ),
}
UNCODED_MODULATIONS = ("bpsk", "qpsk")
MODULATIONS: tuple[str, ...] = UNCODED_MODULATIONS + tuple(CODED_BER_TABLES)
_BER_FLOOR = 1e-300  # keeps log10 finite; far below anything a simulation can observe

# Distance spectrum of the CCSDS / NASA K=7 r=1/2 code (generators 171, 133 octal): output
# distance d -> (a_d error events, c_d information-bit errors). Published in J. P. Odenwalder,
# "Optimal decoding of convolutional codes", PhD thesis, UCLA 1970, and in J. G. Proakis,
# "Digital Communications" (table of the best rate-1/2 codes); test_linkbudget re-derives it.
CONV_K7_SPECTRUM: tuple[tuple[int, int, int], ...] = (
    (10, 11, 36),
    (12, 38, 211),
    (14, 193, 1404),
    (16, 1331, 11633),
    (18, 7275, 77433),
    (20, 40406, 502690),
)
# schemes whose message errors follow the error-event model (others: independent bits, which
# for the block-coded RS and turbo schemes overstates PER; see docs/LINKS.md)
EVENT_MODULATIONS: dict[str, tuple[float, tuple[tuple[int, int, int], ...]]] = {
    "bpsk-conv-k7-r1/2": (0.5, CONV_K7_SPECTRUM),
}


def ber_for_ebn0(ebn0_db: float | np.ndarray, modulation: str = "bpsk") -> Any:
    """Bit error rate at ``ebn0_db`` for ``modulation`` (one of :data:`MODULATIONS`).

    Uncoded BPSK and Gray-coded QPSK have the same BER per bit, 0.5 erfc(sqrt(Eb/N0)).
    Coded schemes interpolate a table in the log domain and extrapolate its end slopes.

    >>> f"{ber_for_ebn0(9.6):.1e}"
    '9.7e-06'
    """
    check_choice("modulation", modulation, MODULATIONS, error=LinkBudgetError)
    x = np.asarray(ebn0_db, dtype=float)
    if modulation in UNCODED_MODULATIONS:
        from scipy.special import erfc  # here, not at import: scipy.special costs 0.2-0.4 s

        out = 0.5 * erfc(np.sqrt(10.0 ** (x / 10.0)))
    else:
        table = CODED_BER_TABLES[modulation]
        xs = np.array([p[0] for p in table])
        ys = np.log10([p[1] for p in table])
        log_ber = np.interp(x, xs, ys)
        # np.interp clamps; extend the first and last segments instead, so margins beyond the
        # table still move the BER (a coded scheme below its table is worse, not constant)
        lo_slope = (ys[1] - ys[0]) / (xs[1] - xs[0])
        hi_slope = (ys[-1] - ys[-2]) / (xs[-1] - xs[-2])
        log_ber = np.where(x < xs[0], ys[0] + lo_slope * (x - xs[0]), log_ber)
        log_ber = np.where(x > xs[-1], ys[-1] + hi_slope * (x - xs[-1]), log_ber)
        out = 10.0 ** np.clip(log_ber, math.log10(_BER_FLOOR), math.log10(0.5))
    return float(out) if np.ndim(out) == 0 else out


def required_ebn0_db(modulation: str = "bpsk", target_ber: float = 1e-5) -> float:
    """Eb/N0 (dB) at which ``modulation`` reaches ``target_ber``.

    >>> round(required_ebn0_db("bpsk", 1e-5), 2)
    9.59
    """
    check_choice("modulation", modulation, MODULATIONS, error=LinkBudgetError)
    check_real(
        "target_ber", target_ber, lo=0.0, hi=0.5, lo_open=True, hi_open=True, error=LinkBudgetError
    )
    if modulation in UNCODED_MODULATIONS:
        from scipy.special import erfcinv

        return float(10.0 * math.log10(float(erfcinv(2.0 * target_ber)) ** 2))
    table = CODED_BER_TABLES[modulation]
    # BER falls monotonically with Eb/N0, so invert by bisection on the interpolated curve
    lo, hi = table[0][0] - 20.0, table[-1][0] + 20.0
    for _ in range(100):
        mid = 0.5 * (lo + hi)
        if ber_for_ebn0(mid, modulation) > target_ber:
            lo = mid
        else:
            hi = mid
    return 0.5 * (lo + hi)


def packet_error_rate(ber: float | np.ndarray, packet_bits: int) -> Any:
    """PER = 1 - (1 - BER)^bits, assuming independent bit errors (computed without cancellation).

    >>> round(packet_error_rate(1e-5, 2880), 5)
    0.02839
    """
    b = np.clip(np.asarray(ber, dtype=float), 0.0, 1.0)
    with np.errstate(divide="ignore"):
        out = -np.expm1(packet_bits * np.log1p(-b))
    return float(out) if np.ndim(out) == 0 else out


def bits_per_error_event(ebn0_db: float, modulation: str) -> float:
    """Mean wrong bits per decoder error event (1.0 for schemes without the event model)."""
    if modulation not in EVENT_MODULATIONS:
        return 1.0
    rate, spectrum = EVENT_MODULATIONS[modulation]
    ebn0 = 10.0 ** (ebn0_db / 10.0)
    events = bits = 0.0
    for d, a_d, c_d in spectrum:
        p_d = 0.5 * math.erfc(math.sqrt(d * rate * ebn0))  # Q(sqrt(2 d R Eb/N0))
        events += a_d * p_d
        bits += c_d * p_d
    if events <= 0.0:  # far above the waterfall: the free-distance events dominate
        d, a_d, c_d = spectrum[0]
        return c_d / a_d
    return bits / events


def message_error_rate(ebn0_db: float, bits: int, modulation: str) -> float:
    """Probability that a message of ``bits`` information bits arrives with an error.

    Independent bit errors for uncoded and block-coded schemes; the error-event model for the
    convolutional code (module docstring).
    """
    ber = float(ber_for_ebn0(ebn0_db, modulation))
    rate = min(1.0, ber / bits_per_error_event(ebn0_db, modulation))
    return -math.expm1(bits * math.log1p(-rate)) if rate < 1.0 else 1.0
