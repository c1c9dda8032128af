"""Link budget: geometry, free-space loss, C/N0, Eb/N0, margin, BER and PER.

Every number a replay's loss model uses can be traced to a term here, printed one per row.

>>> from satlink.linkbudget import BudgetConfig, evaluate_budget, fspl_db
>>> round(fspl_db(35_786.0, 1.6e9), 1)
187.6
>>> cfg = BudgetConfig(freq_hz=1.6e9, eirp_dbw=10.0, gt_dbk=-20.0, rate_bps=2400.0,
...                    altitude_km=35_786.0, elevation_deg=45.0)
>>> budget = evaluate_budget(cfg)
>>> round(budget["slant_range_km"]), round(budget["margin_db"], 1)
(37411, -12.8)

Conventions: losses are positive numbers in dB that are subtracted; ``losses_db`` is the sum of all
losses other than free-space path loss; Eb is per information bit at ``rate_bps``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

# The error family and the checks live in satlink.config (shared by every layer); ConfigError and
# LinkBudgetError stay importable from here.
from satlink.config import (
    DEFAULT_PACKET_SIZE_BYTES,
    ConfigError,
    LinkBudgetError,
    check_choice,
    check_int,
    check_real,
)
from satlink.modulation import (
    MODULATIONS,
    UNCODED_MODULATIONS,
    ber_for_ebn0,
    message_error_rate,
    packet_error_rate,
    required_ebn0_db,
)

__all__ = [
    "BOLTZMANN_DB",
    "EARTH_MU_KM3_S2",
    "EARTH_RADIUS_KM",
    "MODULATIONS",
    "SPEED_OF_LIGHT_KM_S",
    "BudgetConfig",
    "CircularPass",
    "ConfigError",
    "ElevationProfile",
    "LinkBudgetError",
    "ber_for_ebn0",
    "budget_over_pass",
    "evaluate_budget",
    "format_budget_table",
    "fspl_db",
    "message_error_rate",
    "packet_error_rate",
    "propagation_delay_s",
    "required_ebn0_db",
    "slant_range_km",
    "slant_range_scalar_km",
]

EARTH_RADIUS_KM = 6371.0  # spherical Earth, as the issue asks; good to ~0.3% on slant ranges
EARTH_MU_KM3_S2 = 398_600.4418  # GM of the Earth (WGS 84)
SPEED_OF_LIGHT_KM_S = 299_792.458
BOLTZMANN_DB = 228.6  # -10*log10(k), k = 1.380649e-23 J/K, in dB(W/(K*Hz))^-1
GEO_ALTITUDE_KM = 35_786.0


# ---------------------------------------------------------------------------------------------
# Geometry
# ---------------------------------------------------------------------------------------------


def slant_range_km(altitude_km: float | np.ndarray, elevation_deg: float | np.ndarray) -> Any:
    """Distance from a ground station to a satellite at ``altitude_km`` seen at ``elevation_deg``.

    Spherical Earth (R = 6371 km): d = sqrt((R+h)^2 - (R cos e)^2) - R sin e.

    >>> round(slant_range_km(35_786.0, 90.0), 3)
    35786.0
    >>> round(slant_range_km(550.0, 10.0))
    1815
    """
    e = np.radians(elevation_deg)
    r = EARTH_RADIUS_KM + np.asarray(altitude_km, dtype=float)
    rc = EARTH_RADIUS_KM * np.cos(e)
    d = np.sqrt(r * r - rc * rc) - EARTH_RADIUS_KM * np.sin(e)
    return float(d) if np.ndim(d) == 0 else d


def slant_range_scalar_km(altitude_km: float, elevation_deg: float) -> float:
    """:func:`slant_range_km` for plain floats, with ``math`` only (numpy scalars cost µs, and the
    channel calls this once per packet).

    >>> round(slant_range_scalar_km(550.0, 10.0))
    1815
    """
    e = math.radians(elevation_deg)
    r = EARTH_RADIUS_KM + altitude_km
    rc = EARTH_RADIUS_KM * math.cos(e)
    return math.sqrt(r * r - rc * rc) - EARTH_RADIUS_KM * math.sin(e)


def propagation_delay_s(altitude_km: float, elevation_deg: float, hops: int = 1) -> float:
    """One-way propagation delay over ``hops`` legs of the same geometry.

    >>> round(propagation_delay_s(35_786.0, 90.0), 4)
    0.1194
    """
    return hops * slant_range_scalar_km(altitude_km, elevation_deg) / SPEED_OF_LIGHT_KM_S


def fspl_db(distance_km: float | np.ndarray, freq_hz: float | np.ndarray) -> Any:
    """Free-space path loss, FSPL = 92.45 + 20 log10(d_km) + 20 log10(f_GHz).

    >>> round(fspl_db(35_786.0, 1.6e9), 1)
    187.6
    """
    out = 92.45 + 20.0 * np.log10(distance_km) + 20.0 * np.log10(np.asarray(freq_hz) / 1e9)
    return float(out) if np.ndim(out) == 0 else out


@dataclass(frozen=True)
class CircularPass:
    """Elevation over one pass of a satellite in a circular orbit, seen from a ground station.

    A non-rotating spherical Earth: the sub-satellite point moves along a great circle at the
    orbital rate, and the station sits at a fixed cross-track distance chosen so that the pass
    peaks at ``max_elevation_deg``. Time is measured from the pass's midpoint (culmination).

    >>> p = CircularPass(altitude_km=550.0, max_elevation_deg=60.0, min_elevation_deg=10.0)
    >>> round(p.duration_s)
    469
    >>> round(float(p.elevation_deg(0.0)), 6)
    60.0
    """

    altitude_km: float
    max_elevation_deg: float
    min_elevation_deg: float = 10.0

    def __post_init__(self) -> None:
        check_real("altitude_km", self.altitude_km, lo=0.0, lo_open=True, error=LinkBudgetError)
        check_real(
            "max_elevation_deg", self.max_elevation_deg, lo=0.0, hi=90.0, error=LinkBudgetError
        )
        check_real(
            "min_elevation_deg", self.min_elevation_deg, lo=0.0, hi=90.0, error=LinkBudgetError
        )
        if self.min_elevation_deg > self.max_elevation_deg:
            raise LinkBudgetError(
                f"min_elevation_deg = {self.min_elevation_deg!r} is above max_elevation_deg = "
                f"{self.max_elevation_deg!r}; allowed: 0 <= min_elevation_deg <= "
                "max_elevation_deg <= 90"
            )

    @property
    def orbit_radius_km(self) -> float:
        return EARTH_RADIUS_KM + self.altitude_km

    @property
    def angular_rate_rad_s(self) -> float:
        """Orbital angular rate, sqrt(GM / r^3)."""
        return math.sqrt(EARTH_MU_KM3_S2 / self.orbit_radius_km**3)

    def _central_angle_rad(self, elevation_deg: float) -> float:
        # Earth central angle between station and sub-satellite point at a given elevation
        e = math.radians(elevation_deg)
        return math.acos(EARTH_RADIUS_KM * math.cos(e) / self.orbit_radius_km) - e

    @property
    def duration_s(self) -> float:
        """Time spent above ``min_elevation_deg``."""
        g0 = self._central_angle_rad(self.max_elevation_deg)
        g_edge = self._central_angle_rad(self.min_elevation_deg)
        c = min(1.0, math.cos(g_edge) / math.cos(g0))
        return 2.0 * math.acos(c) / self.angular_rate_rad_s

    def elevation_deg(self, t_from_mid_s: float | np.ndarray) -> Any:
        """Elevation at ``t_from_mid_s`` seconds from culmination (negative below the horizon)."""
        g0 = self._central_angle_rad(self.max_elevation_deg)
        theta = self.angular_rate_rad_s * np.asarray(t_from_mid_s, dtype=float)
        # spherical right triangle: cross-track g0, along-track theta
        cos_g = np.clip(math.cos(g0) * np.cos(theta), -1.0, 1.0)
        sin_g = np.sqrt(1.0 - cos_g * cos_g)
        el = np.degrees(np.arctan2(cos_g - EARTH_RADIUS_KM / self.orbit_radius_km, sin_g))
        return float(el) if np.ndim(el) == 0 else el

    def elevation_deg_scalar(self, t_from_mid_s: float) -> float:
        """Math-only :meth:`elevation_deg` for one time (the channel calls it per packet)."""
        g0 = self._central_angle_rad(self.max_elevation_deg)
        cos_g = max(-1.0, min(1.0, math.cos(g0) * math.cos(self.angular_rate_rad_s * t_from_mid_s)))
        sin_g = math.sqrt(1.0 - cos_g * cos_g)
        return math.degrees(math.atan2(cos_g - EARTH_RADIUS_KM / self.orbit_radius_km, sin_g))


@dataclass(frozen=True)
class ElevationProfile:
    """A given elevation-versus-time profile (for example from a pass predictor), interpolated.

    >>> prof = ElevationProfile(times_s=(0.0, 300.0, 600.0), elevations_deg=(10.0, 70.0, 10.0))
    >>> prof.duration_s, float(prof.elevation_deg(150.0))
    (600.0, 40.0)
    """

    times_s: tuple[float, ...]
    elevations_deg: tuple[float, ...]

    def __post_init__(self) -> None:
        if len(self.times_s) < 2 or len(self.times_s) != len(self.elevations_deg):
            raise LinkBudgetError(
                "times_s and elevations_deg must have the same length, at least 2; got "
                f"{len(self.times_s)} and {len(self.elevations_deg)}"
            )
        for i, (t, e) in enumerate(zip(self.times_s, self.elevations_deg, strict=True)):
            check_real(f"times_s[{i}]", t, error=LinkBudgetError)
            check_real(f"elevations_deg[{i}]", e, lo=0.0, hi=90.0, error=LinkBudgetError)
        if any(b <= a for a, b in zip(self.times_s, self.times_s[1:], strict=False)):
            raise LinkBudgetError("times_s must be strictly increasing")

    @property
    def duration_s(self) -> float:
        return float(self.times_s[-1] - self.times_s[0])

    def elevation_deg(self, t_s: float | np.ndarray) -> Any:
        out = np.interp(t_s, self.times_s, self.elevations_deg)
        return float(out) if np.ndim(out) == 0 else out


# ---------------------------------------------------------------------------------------------
# Bit and packet error rates
# ---------------------------------------------------------------------------------------------

# The curves live in satlink.modulation (BER tables, the convolutional code's error-event
# model); the names are re-exported here.


# ---------------------------------------------------------------------------------------------
# Budget
# ---------------------------------------------------------------------------------------------

ATMOSPHERE_MODELS = ("constant", "itur")


@dataclass(frozen=True)
class BudgetConfig:
    """Inputs of one link budget (the user's uplink to the satellite, the weak leg).

    Geometry: ``altitude_km`` and ``elevation_deg``; for a pass, set ``pass_max_elevation_deg``
    and the budget is evaluated every ``step_s`` while the satellite is above
    ``min_elevation_deg``. Atmosphere: constant losses in dB (default), or ITU-R P.618/P.676
    via the optional ``itur`` package at the site and availability given.

    >>> cfg = BudgetConfig(freq_hz=2.2e9, eirp_dbw=0.0, gt_dbk=-25.0, rate_bps=2400.0,
    ...                    altitude_km=550.0, pass_max_elevation_deg=80.0)
    >>> cfg.is_pass
    True
    """

    freq_hz: float
    eirp_dbw: float
    gt_dbk: float
    rate_bps: float
    altitude_km: float = GEO_ALTITUDE_KM
    elevation_deg: float = 90.0
    atmospheric_loss_db: float = 0.0
    rain_loss_db: float = 0.0
    misc_loss_db: float = 0.0
    modulation: str = "bpsk"
    target_ber: float = 1e-5
    required_ebn0_db: float | None = None
    packet_bytes: int = DEFAULT_PACKET_SIZE_BYTES
    atmosphere: str = "constant"
    site_lat_deg: float = 0.0
    site_lon_deg: float = 0.0
    availability_pct: float = 99.0
    antenna_diameter_m: float = 0.3
    pass_max_elevation_deg: float | None = None
    min_elevation_deg: float = 10.0
    step_s: float = 30.0

    def __post_init__(self) -> None:
        e = LinkBudgetError
        check_real("budget.freq_hz", self.freq_hz, lo=1e6, hi=1e12, error=e)
        check_real("budget.eirp_dbw", self.eirp_dbw, lo=-100.0, hi=100.0, error=e)
        check_real("budget.gt_dbk", self.gt_dbk, lo=-100.0, hi=100.0, error=e)
        check_real("budget.rate_bps", self.rate_bps, lo=0.0, lo_open=True, error=e)
        check_real("budget.altitude_km", self.altitude_km, lo=0.0, lo_open=True, error=e)
        check_real("budget.elevation_deg", self.elevation_deg, lo=0.0, hi=90.0, error=e)
        for name in ("atmospheric_loss_db", "rain_loss_db", "misc_loss_db"):
            check_real(f"budget.{name}", getattr(self, name), lo=0.0, hi=100.0, error=e)
        check_choice("budget.modulation", self.modulation, MODULATIONS, error=e)
        check_real("budget.target_ber", self.target_ber, lo=0, hi=0.5, lo_open=True, error=e)
        if self.required_ebn0_db is not None:
            check_real("budget.required_ebn0_db", self.required_ebn0_db, lo=-5, hi=40, error=e)
        check_int("budget.packet_bytes", self.packet_bytes, lo=1, error=e)
        check_choice("budget.atmosphere", self.atmosphere, ATMOSPHERE_MODELS, error=e)
        check_real("budget.site_lat_deg", self.site_lat_deg, lo=-90.0, hi=90.0, error=e)
        check_real("budget.site_lon_deg", self.site_lon_deg, lo=-180.0, hi=360.0, error=e)
        check_real("budget.availability_pct", self.availability_pct, lo=95, hi=99.999, error=e)
        check_real(
            "budget.antenna_diameter_m", self.antenna_diameter_m, lo=0, lo_open=True, error=e
        )
        if self.pass_max_elevation_deg is not None:
            check_real(
                "budget.pass_max_elevation_deg", self.pass_max_elevation_deg, lo=0, hi=90, error=e
            )
        check_real("budget.min_elevation_deg", self.min_elevation_deg, lo=0.0, hi=90.0, error=e)
        if self.pass_max_elevation_deg is not None and (
            self.min_elevation_deg > self.pass_max_elevation_deg
        ):
            raise e(
                f"budget.min_elevation_deg = {self.min_elevation_deg!r} is above "
                f"pass_max_elevation_deg = {self.pass_max_elevation_deg!r}; allowed: "
                "min_elevation_deg <= pass_max_elevation_deg"
            )
        check_real("budget.step_s", self.step_s, lo=0.0, lo_open=True, error=e)

    @property
    def is_pass(self) -> bool:
        return self.pass_max_elevation_deg is not None

    @property
    def packet_bits(self) -> int:
        return 8 * self.packet_bytes

    def circular_pass(self) -> CircularPass:
        """The pass geometry (only when ``pass_max_elevation_deg`` is set)."""
        if self.pass_max_elevation_deg is None:
            raise LinkBudgetError("budget.pass_max_elevation_deg is not set: no pass to evaluate")
        return CircularPass(self.altitude_km, self.pass_max_elevation_deg, self.min_elevation_deg)

    def required_ebn0(self) -> float:
        """The configured required Eb/N0, or the modulation's at ``target_ber``."""
        if self.required_ebn0_db is not None:
            return float(self.required_ebn0_db)
        return required_ebn0_db(self.modulation, self.target_ber)

    def ebn0_function(self) -> Callable[[float, float], float]:
        """A fast scalar ``(elevation_deg, slant_range_km) -> Eb/N0 (dB)`` for the channel.

        With constant atmospheric losses every term but FSPL is fixed, so Eb/N0 is a constant
        minus 20 log10(d_km); with ITU-R losses the elevation sets the atmosphere (cached per
        0.1 deg) and the range the free-space loss.
        """
        if self.atmosphere != "constant":
            cache: dict[float, float] = {}

            def ebn0_itur(elevation_deg: float, slant_range_km: float) -> float:
                key = round(elevation_deg, 1)  # ITU-R calls cost ms; 0.1 deg is ample
                if key not in cache:
                    b = evaluate_budget(self, elevation_deg=key)
                    cache[key] = b["ebn0_db"] + 20.0 * math.log10(b["slant_range_km"])
                return cache[key] - 20.0 * math.log10(slant_range_km)

            return ebn0_itur
        k_db = (
            self.eirp_dbw
            - self.atmospheric_loss_db
            - self.rain_loss_db
            - self.misc_loss_db
            + self.gt_dbk
            + BOLTZMANN_DB
            - 10.0 * math.log10(self.rate_bps)
            - 92.45
            - 20.0 * math.log10(self.freq_hz / 1e9)
        )

        def ebn0(elevation_deg: float, slant_range_km: float) -> float:
            return k_db - 20.0 * math.log10(slant_range_km)

        return ebn0

    def ber_function(self) -> Callable[[float], float]:
        """A fast scalar ``elevation_deg -> BER`` on this budget's spherical geometry."""
        ebn0_at = self.ebn0_function()
        alt, modulation = self.altitude_km, self.modulation
        if modulation in UNCODED_MODULATIONS:

            def ber_uncoded(elevation_deg: float) -> float:
                ebn0_db = ebn0_at(elevation_deg, slant_range_scalar_km(alt, elevation_deg))
                return 0.5 * math.erfc(math.sqrt(10.0 ** (ebn0_db / 10.0)))

            return ber_uncoded

        def ber_coded(elevation_deg: float) -> float:
            ebn0_db = ebn0_at(elevation_deg, slant_range_scalar_km(alt, elevation_deg))
            return float(ber_for_ebn0(ebn0_db, modulation))

        return ber_coded


def _itur_losses_db(cfg: BudgetConfig, elevation_deg: float) -> tuple[float, float]:
    """(gaseous+cloud+scintillation, rain) attenuation from ITU-R via the optional ``itur``."""
    try:
        import itur  # heavy (astropy, data files); only imported when asked for
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise LinkBudgetError(
            "budget.atmosphere = 'itur' needs the optional package 'itur' "
            "(pip install 'satlink[itur]'); or set budget.atmosphere = 'constant'"
        ) from exc
    p = 100.0 - cfg.availability_pct  # percentage of an average year the loss is exceeded
    gas, cloud, rain, scint, _total = itur.atmospheric_attenuation_slant_path(
        cfg.site_lat_deg,
        cfg.site_lon_deg,
        cfg.freq_hz / 1e9,
        max(elevation_deg, 5.0),  # P.618 is not valid near the horizon
        p,
        cfg.antenna_diameter_m,
        return_contributions=True,
    )

    def val(q: Any) -> float:
        return float(getattr(q, "value", q))

    return val(gas) + val(cloud) + val(scint), val(rain)


def evaluate_budget(
    cfg: BudgetConfig,
    *,
    elevation_deg: float | None = None,
    packet_bits: int | None = None,
    t_s: float | None = None,
    slant_range_km: float | None = None,
) -> dict[str, Any]:
    """Evaluate the budget at one elevation; returns every input and term as plain numbers.

    >>> cfg = BudgetConfig(freq_hz=1.6e9, eirp_dbw=10.0, gt_dbk=-20.0, rate_bps=2400.0)
    >>> b = evaluate_budget(cfg)
    >>> round(b["fspl_db"], 1), round(b["cn0_dbhz"], 1), round(b["ebn0_db"], 1)
    (187.6, 31.0, -2.8)
    """
    el = cfg.elevation_deg if elevation_deg is None else elevation_deg
    el = check_real("elevation_deg", el, lo=0.0, hi=90.0, error=LinkBudgetError)
    bits = (
        cfg.packet_bits
        if packet_bits is None
        else check_int("packet_bits", packet_bits, lo=1, error=LinkBudgetError)
    )
    d_km = (
        slant_range_scalar_km(cfg.altitude_km, el)
        if slant_range_km is None
        else check_real("slant_range_km", slant_range_km, lo=0, lo_open=True, error=LinkBudgetError)
    )
    fspl = fspl_db(d_km, cfg.freq_hz)
    if cfg.atmosphere == "itur":
        atm_db, rain_db = _itur_losses_db(cfg, el)
    else:
        atm_db, rain_db = cfg.atmospheric_loss_db, cfg.rain_loss_db
    losses = atm_db + rain_db + cfg.misc_loss_db
    cn0 = cfg.eirp_dbw - fspl - losses + cfg.gt_dbk + BOLTZMANN_DB
    rate_dbhz = 10.0 * math.log10(cfg.rate_bps)
    ebn0 = cn0 - rate_dbhz
    req = cfg.required_ebn0()
    ber = float(ber_for_ebn0(ebn0, cfg.modulation))
    return {
        "t_s": t_s,
        "freq_hz": float(cfg.freq_hz),
        "altitude_km": float(cfg.altitude_km),
        "elevation_deg": float(el),
        "slant_range_km": float(d_km),
        "delay_s": float(d_km / SPEED_OF_LIGHT_KM_S),
        "fspl_db": float(fspl),
        "eirp_dbw": float(cfg.eirp_dbw),
        "atmospheric_loss_db": float(atm_db),
        "rain_loss_db": float(rain_db),
        "misc_loss_db": float(cfg.misc_loss_db),
        "losses_db": float(losses),
        "gt_dbk": float(cfg.gt_dbk),
        "boltzmann_db": BOLTZMANN_DB,
        "cn0_dbhz": float(cn0),
        "rate_bps": float(cfg.rate_bps),
        "rate_dbhz": float(rate_dbhz),
        "ebn0_db": float(ebn0),
        "modulation": cfg.modulation,
        "target_ber": float(cfg.target_ber),
        "required_ebn0_db": float(req),
        "margin_db": float(ebn0 - req),
        "ber": ber,
        "packet_bits": int(bits),
        # the error-event model for the convolutional code, independent bits otherwise
        "per": message_error_rate(ebn0, bits, cfg.modulation),
        "atmosphere": cfg.atmosphere,
    }


def budget_over_pass(
    cfg: BudgetConfig,
    geometry: CircularPass | ElevationProfile | None = None,
    step_s: float | None = None,
) -> list[dict[str, Any]]:
    """Evaluate the budget every ``step_s`` over a pass; ``t_s`` counts from acquisition.

    ``geometry`` defaults to ``cfg.circular_pass()``.

    >>> cfg = BudgetConfig(freq_hz=2.2e9, eirp_dbw=0.0, gt_dbk=-25.0, rate_bps=2400.0,
    ...                    altitude_km=550.0, pass_max_elevation_deg=80.0, step_s=60.0)
    >>> steps = budget_over_pass(cfg)
    >>> len(steps), steps[0]["t_s"], round(steps[0]["elevation_deg"], 1)
    (9, 0.0, 10.0)
    """
    geo = geometry if geometry is not None else cfg.circular_pass()
    dt = check_real(
        "step_s",
        cfg.step_s if step_s is None else step_s,
        lo=0.0,
        lo_open=True,
        error=LinkBudgetError,
    )
    duration = geo.duration_s
    times = np.arange(0.0, duration + 1e-9, dt)
    if times[-1] < duration - 1e-9:  # always include loss of signal, the worst point
        times = np.append(times, duration)
    if isinstance(geo, CircularPass):
        elevations = np.clip(geo.elevation_deg(times - duration / 2.0), 0.0, 90.0)
    else:
        elevations = np.clip(geo.elevation_deg(times + geo.times_s[0]), 0.0, 90.0)
    return [
        evaluate_budget(cfg, elevation_deg=float(e), t_s=float(t))
        for t, e in zip(times, elevations, strict=True)
    ]


def _fmt_ber(x: float) -> str:
    return f"{x:.2e}" if x > 0 else "0"


def format_budget_table(budget: dict[str, Any] | list[dict[str, Any]], title: str = "") -> str:
    """A readable breakdown: one term per row in dB for one budget, or one row per pass step.

    >>> cfg = BudgetConfig(freq_hz=1.6e9, eirp_dbw=10.0, gt_dbk=-20.0, rate_bps=2400.0)
    >>> format_budget_table(evaluate_budget(cfg)).splitlines()[2].split()
    ['EIRP', '+10.00', 'dBW']
    """
    if isinstance(budget, list):
        return _format_pass_table(budget, title)
    b = budget
    rows: list[tuple[str, str, str]] = [
        ("EIRP", f"{b['eirp_dbw']:+.2f}", "dBW"),
        (
            f"Free-space path loss ({b['slant_range_km']:,.0f} km, {b['freq_hz'] / 1e9:g} GHz)",
            f"{0.0 - b['fspl_db']:+.2f}",
            "dB",
        ),
        (f"Atmospheric loss ({b['atmosphere']})", f"{0.0 - b['atmospheric_loss_db']:+.2f}", "dB"),
        ("Rain loss", f"{0.0 - b['rain_loss_db']:+.2f}", "dB"),
        ("Misc. losses (pointing, polarisation, ...)", f"{0.0 - b['misc_loss_db']:+.2f}", "dB"),
        ("Receiver G/T", f"{b['gt_dbk']:+.2f}", "dB/K"),
        ("Boltzmann constant, -10 log10(k)", f"{b['boltzmann_db']:+.2f}", "dB"),
        ("C/N0", f"{b['cn0_dbhz']:.2f}", "dB-Hz"),
        (f"Data rate ({b['rate_bps']:g} bps)", f"{0.0 - b['rate_dbhz']:+.2f}", "dB-Hz"),
        ("Eb/N0", f"{b['ebn0_db']:.2f}", "dB"),
        (f"Required Eb/N0 ({b['modulation']})", f"{b['required_ebn0_db']:.2f}", "dB"),
        ("Margin", f"{b['margin_db']:+.2f}", "dB"),
        ("BER", _fmt_ber(b["ber"]), ""),
        (f"PER ({b['packet_bits']}-bit packet)", f"{b['per']:.3g}", ""),
    ]
    head = title or (
        f"Link budget at {b['elevation_deg']:.1f} deg elevation, altitude {b['altitude_km']:g} km"
    )
    width = max(len(name) for name, _, _ in rows)
    lines = [head, "-" * (width + 18)]
    lines += [f"{name:<{width}}  {value:>9}  {unit}".rstrip() for name, value, unit in rows]
    return "\n".join(lines)


def _format_pass_table(steps: list[dict[str, Any]], title: str) -> str:
    cols = (
        ("t_s", "t (s)", "{:7.0f}"),
        ("elevation_deg", "elev (deg)", "{:10.1f}"),
        ("slant_range_km", "range (km)", "{:10.0f}"),
        ("delay_s", "delay (ms)", None),
        ("fspl_db", "FSPL (dB)", "{:9.2f}"),
        ("cn0_dbhz", "C/N0 (dB-Hz)", "{:12.2f}"),
        ("ebn0_db", "Eb/N0 (dB)", "{:10.2f}"),
        ("margin_db", "margin (dB)", "{:11.2f}"),
        ("ber", "BER", None),
        ("per", "PER", None),
    )
    header = "  ".join(f"{label:>{max(len(label), 9)}}" for _, label, _ in cols)
    lines = [title or "Link budget over the pass", header, "-" * len(header)]
    for s in steps:
        cells = []
        for key, label, fmt in cols:
            width = max(len(label), 9)
            if key == "delay_s":
                cells.append(f"{1000.0 * s[key]:>{width}.2f}")
            elif key == "per":
                cells.append(f"{s[key]:>{width}.3g}")
            elif fmt is None:
                cells.append(f"{_fmt_ber(s[key]):>{width}}")
            else:
                cells.append(f"{fmt.format(s[key]).strip():>{width}}")
        lines.append("  ".join(cells))
    return "\n".join(lines)
