"""Scenarios: TOML files (or built-in presets) turned into validated, frozen objects.

>>> from satlink.scenario import DEFAULT_SCENARIO, list_presets, load_scenario
>>> DEFAULT_SCENARIO in list_presets()
True
>>> s = load_scenario("bds3-rsmc-geo", overrides=["channel.loss.service_loss_p=0.1"])
>>> s.channel.loss.model, s.channel.loss.service_loss_p, s.channel.min_interval_s
('budget-per', 0.1, 60.0)
>>> deliveries, trace = s.build_link(seed=3).run([bytes(s.packets.size_bytes)] * 3)

Layout (every key carries its unit in its name; unknown keys and wrong types are errors):

* ``[scenario]``: ``name``, ``description``, ``source``.
* ``[packets]``: ``size_bytes``, ``fragment_bytes`` (optional service message cap; the
  fragmenting itself is done by :mod:`satlink.packets`), ``order``, ``interleave``.
* ``[channel]``: ``rate_bps``, ``queue_limit_packets``, ``min_interval_s``,
  ``max_message_bytes``, and the tables ``[channel.delay]``, ``[channel.visibility]``,
  ``[channel.loss]``, ``[channel.arq]`` (fields of :mod:`satlink.channel`'s configs).
* ``[fec]`` (optional): ``scheme`` (``none`` by default, ``reed-solomon``),
  ``repair_ratio_per_stage``, ``placement``, ``file_repair_ratio``, ``fragment_repair_ratio``
  (:class:`satlink.packets.FecConfig`; erasure coding: ``docs/PACKET_FORMAT.md``).
* ``[budget]`` (optional): ``freq_hz``, ``eirp_dbw``, ``gt_dbk``, losses, ``modulation``, ...
  The data rate, the packet length on the wire and the geometry are taken from ``[channel]``
  and ``[packets]`` so that budget and simulation can never disagree.
"""

from __future__ import annotations

import copy
import dataclasses
import importlib.resources
import math
import tomllib
import types
import typing
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from satlink.channel import Link, LinkConfig
from satlink.channel.terminals import apply_terminal_class
from satlink.config import ConfigError, ScenarioError  # ScenarioError: re-exported
from satlink.linkbudget import BudgetConfig, budget_over_pass, evaluate_budget
from satlink.orbit import GroundStation, OrbitConfig, Pass
from satlink.packets import ORDERS, FecConfig, PacketsConfig  # both re-exported
from satlink.scenario_orbit import (
    ORBIT_TABLES,
    budget_over_orbit,
    build_track,
    loss_mismatch,
    orbit_tables,
    scenario_passes,
)

__all__ = [
    "BUDGET_DERIVED_KEYS",
    "DEFAULT_SCENARIO",
    "PACKET_ORDERS",
    "FecConfig",
    "PacketsConfig",
    "Scenario",
    "ScenarioError",
    "ScenarioInfo",
    "apply_overrides",
    "check_keys_read",
    "list_presets",
    "load_scenario",
    "parse_scenario",
]

DEFAULT_SCENARIO = "bds3-rsmc-geo"
PRESETS_PACKAGE = "satlink.presets"
# Orders understood by satlink.packets' packetizer (stage-major is its default).
PACKET_ORDERS: tuple[str, ...] = ORDERS
# [budget] keys that are not written in the file but taken from [channel] and [packets]
BUDGET_DERIVED_KEYS = (
    "rate_bps",
    "packet_bytes",
    "altitude_km",
    "elevation_deg",
    "pass_max_elevation_deg",
    "min_elevation_deg",
)


@dataclass(frozen=True)
class ScenarioInfo:
    """The ``[scenario]`` table: a name, a description and where its numbers come from."""

    name: str
    description: str = ""
    source: str = ""


@dataclass(frozen=True)
class Scenario:
    """A validated scenario. ``channel`` is ready for :class:`satlink.channel.Link`; ``budget``
    (or None) is complete, with rate, message length and geometry filled in from the channel.
    ``origin`` is what it was loaded from (a preset name or a file path: ``load_scenario(origin,
    overrides)`` loads it again); ``overrides`` are the ``--set`` strings applied.
    """

    info: ScenarioInfo
    packets: PacketsConfig
    channel: LinkConfig
    budget: BudgetConfig | None
    origin: str = "<dict>"
    overrides: tuple[str, ...] = ()
    fec: FecConfig = dataclasses.field(default_factory=FecConfig)  # [fec]: none by default
    orbit: OrbitConfig | None = None  # [orbit]: a TLE and the start time (satlink.orbit)
    ground_station: GroundStation | None = None  # [ground_station]

    @property
    def name(self) -> str:
        return self.info.name

    def link_config(self) -> LinkConfig:
        """The channel configuration (the budget is attached for the budget loss models)."""
        return self.channel

    def build_link(
        self,
        seed: int | np.random.SeedSequence = 0,
        *,
        integrity_check: Callable[[bytes], bool] | None = None,
    ) -> Link:
        """A :class:`~satlink.channel.Link` for this scenario.

        >>> link = load_scenario("iridium-sbd").build_link(seed=1)
        >>> link.config.max_message_bytes
        340
        """
        return Link(self.channel, seed, integrity_check=integrity_check)

    def with_overrides(self, overrides: Sequence[str]) -> Scenario:
        """This scenario with more ``key=value`` overrides applied (validated again).

        >>> s = load_scenario("iridium-sbd", ["channel.loss.r=0.5"])
        >>> t = s.with_overrides(["packets.interleave=true"])
        >>> t.channel.loss.r, t.packets.interleave, t.overrides
        (0.5, True, ('channel.loss.r=0.5', 'packets.interleave=true'))
        """
        data = self.to_dict()
        del data["scenario"]["origin"], data["scenario"]["overrides"]
        all_overrides = (*self.overrides, *overrides)
        try:
            data = apply_overrides(data, overrides)
        except ScenarioError as exc:
            raise ScenarioError(f"{self.origin}: {exc}") from None
        return parse_scenario(data, self.origin, all_overrides)

    def link_budget(self) -> dict[str, Any] | list[dict[str, Any]]:
        """The link budget: one dict, or one dict per time step when the scenario has a pass.

        >>> b = load_scenario("bds3-rsmc-geo").link_budget()
        >>> b["freq_hz"] > 1e9
        True
        """
        if self.budget is None:
            raise ScenarioError(
                f"scenario {self.name!r} has no [budget] section; add freq_hz, eirp_dbw and gt_dbk"
            )
        if self.channel.track is not None:
            return budget_over_orbit(self.budget, self.channel.track)
        if self.budget.is_pass:
            return budget_over_pass(self.budget)
        return evaluate_budget(self.budget)

    def passes(self, days: float | None = None) -> list[Pass]:
        """Passes of the ``[orbit]`` over the ``[ground_station]`` (``days`` default: the
        orbit's), as :func:`satlink.orbit.find_passes` gives them."""
        return scenario_passes(self.name, self.orbit, self.ground_station, days)

    def loss_warning(self) -> str | None:
        """A warning when the budget's PER and the loss applied differ by more than 10x."""
        return loss_mismatch(self.name, self.channel, self.budget)

    def to_dict(self) -> dict[str, Any]:
        """Plain nested dict in the file's layout, defaults filled in (for summary.json).

        ``parse_scenario(s.to_dict())`` rebuilds an equal scenario; ``origin`` and
        ``overrides`` are recorded under ``[scenario]``.
        """
        out: dict[str, Any] = {
            "scenario": {
                **_table(self.info),
                "origin": self.origin,
                "overrides": list(self.overrides),
            },
            "packets": _table(self.packets),
            "channel": _table(self.channel, skip=("budget", "track")),
            # [fec] only when set: scenarios without it keep their to_dict (and sweep keys)
            **({"fec": _table(self.fec)} if self.fec != FecConfig() else {}),
        }
        if self.budget is not None:
            out["budget"] = _table(self.budget, skip=BUDGET_DERIVED_KEYS)
        for name in ORBIT_TABLES:  # [orbit], [ground_station] only when given
            if getattr(self, name) is not None:
                out[name] = _table(getattr(self, name))
        return out


def _table(obj: Any, skip: Sequence[str] = ()) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for f in dataclasses.fields(obj):
        if f.name in skip:
            continue
        v = getattr(obj, f.name)
        if v is None:
            continue  # TOML has no null: an absent key means "default / derived"
        if dataclasses.is_dataclass(v):
            out[f.name] = _table(v)
        elif isinstance(v, tuple):
            out[f.name] = [list(x) if isinstance(x, tuple) else x for x in v]
        else:
            out[f.name] = v
    return out


# ---------------------------------------------------------------------------------------------
# Schema checking: the dataclasses are the schema; their __post_init__ checks ranges
# ---------------------------------------------------------------------------------------------


def _type_name(tp: Any) -> str:
    names = {float: "a number", int: "an integer", str: "a string", bool: "true or false"}
    if tp in names:
        return names[tp]
    origin = typing.get_origin(tp)
    if origin is tuple:
        return "a list of [start_s, end_s] pairs"
    if dataclasses.is_dataclass(tp):
        return "a table"
    return str(tp)


def _describe(v: Any) -> str:
    kinds = {
        bool: "boolean",
        int: "integer",
        float: "number",
        str: "string",
        dict: "table",
        list: "array",
    }
    return f"{kinds.get(type(v), type(v).__name__)} {v!r}"


def _check_value(key: str, value: Any, tp: Any) -> Any:
    """Check ``value`` against the annotation ``tp``; returns it converted (lists to tuples)."""
    args = typing.get_args(tp)
    if typing.get_origin(tp) in (types.UnionType, typing.Union):  # "X | None": None is absence
        (inner,) = [a for a in args if a is not type(None)]
        return _check_value(key, value, inner)
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ScenarioError(f"key {key!r}: expected a number, got {_describe(value)}")
        return float(value)
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ScenarioError(f"key {key!r}: expected an integer, got {_describe(value)}")
        return value
    if tp is bool or tp is str:
        if not isinstance(value, tp):
            raise ScenarioError(f"key {key!r}: expected {_type_name(tp)}, got {_describe(value)}")
        return value
    if typing.get_origin(tp) is tuple and args in ((float, ...), (int, ...)):  # [0.5, 0.1]
        if not isinstance(value, list | tuple):
            raise ScenarioError(f"key {key!r}: expected a list, got {_describe(value)}")
        return tuple(_check_value(f"{key}[{i}]", x, args[0]) for i, x in enumerate(value))
    if typing.get_origin(tp) is tuple:  # windows_s: [[start_s, end_s], ...]
        if not isinstance(value, list | tuple):
            raise ScenarioError(f"key {key!r}: expected {_type_name(tp)}, got {_describe(value)}")
        pairs = []
        for i, pair in enumerate(value):
            if not isinstance(pair, list | tuple) or len(pair) != 2:
                raise ScenarioError(
                    f"key '{key}[{i}]': expected [start_s, end_s], got {_describe(pair)}"
                )
            pairs.append(tuple(_check_value(f"{key}[{i}]", x, float) for x in pair))
        return tuple(pairs)
    raise AssertionError(f"unsupported annotation {tp!r} for {key}")  # pragma: no cover


def _build(cls: Any, table: Any, prefix: str, skip: Sequence[str] = (), **extra: Any) -> Any:
    """Build dataclass ``cls`` from a TOML table, rejecting unknown keys and wrong types."""
    if not isinstance(table, Mapping):
        raise ScenarioError(f"key {prefix!r}: expected a table, got {_describe(table)}")
    hints = typing.get_type_hints(cls)
    allowed = [f.name for f in dataclasses.fields(cls) if f.name not in skip]
    unknown = [k for k in table if k not in allowed]
    if unknown:
        raise ScenarioError(
            f"unknown key {prefix + '.' + unknown[0]!r}; allowed keys in [{prefix}]: "
            + ", ".join(allowed)
        )
    kwargs: dict[str, Any] = {}
    for name, value in table.items():
        tp = hints[name]
        key = f"{prefix}.{name}"
        if dataclasses.is_dataclass(tp):
            kwargs[name] = _build(tp, value, key)
        else:
            kwargs[name] = _check_value(key, value, tp)
    kwargs.update(extra)
    missing = [
        f.name
        for f in dataclasses.fields(cls)
        if f.name not in kwargs
        and f.default is dataclasses.MISSING
        and f.default_factory is dataclasses.MISSING
    ]
    if missing:
        raise ScenarioError(f"missing key {prefix + '.' + missing[0]!r} (required)")
    return cls(**kwargs)


_TOP_LEVEL = ("scenario", "packets", "channel", "budget", "fec", *ORBIT_TABLES)


def parse_scenario(
    data: Mapping[str, Any],
    source: str = "<dict>",
    overrides: Sequence[str] = (),
    *,
    label: str | None = None,
) -> Scenario:
    """Validate a scenario already read from TOML (a nested dict).

    ``source`` becomes the scenario's ``origin``; errors start with ``label`` (default: source)
    and list ``overrides`` (recorded only: apply them first with :func:`apply_overrides`).

    >>> parse_scenario({"scenario": {"name": "x"}, "channel": {"rate_bps": -5}}, "x.toml")
    Traceback (most recent call last):
    ...
    satlink.config.ScenarioError: x.toml: channel.rate_bps = -5.0 is out of range; allowed: > 0
    """
    where = _where(label if label is not None else source, overrides)
    try:
        return _parse(data, source, tuple(overrides))
    except ScenarioError as exc:
        raise ScenarioError(where + str(exc)) from None
    except ConfigError as exc:  # range errors from the channel and budget configs
        raise ScenarioError(where + str(exc)) from None


def _where(source: str, overrides: Sequence[str]) -> str:
    if overrides:
        return f"{source} (with --set {' '.join(overrides)}): "
    return f"{source}: "


def _parse(data: Mapping[str, Any], source: str, overrides: tuple[str, ...]) -> Scenario:
    if not isinstance(data, Mapping):
        raise ScenarioError(f"expected a TOML document, got {_describe(data)}")
    data = apply_terminal_class(data)  # channel.terminal: its cap, interval, fragmenting
    unknown = [k for k in data if k not in _TOP_LEVEL]
    if unknown:
        raise ScenarioError(
            f"unknown key {unknown[0]!r}; allowed top-level tables: " + ", ".join(_TOP_LEVEL)
        )
    if "scenario" not in data:
        raise ScenarioError("missing table [scenario] (needs at least name)")
    info_table = data["scenario"]
    if isinstance(info_table, Mapping):  # to_dict() records these; they are not inputs
        info_table = {k: v for k, v in info_table.items() if k not in ("origin", "overrides")}
    info = _build(ScenarioInfo, info_table, "scenario")
    packets = _build(PacketsConfig, data.get("packets", {}), "packets")
    chan_table = data.get("channel", {})
    # First pass without the loss table: the budget needs the validated rate and geometry, and
    # the budget loss models need the budget, so the channel is built twice (cheap).
    probe_table = (
        {k: v for k, v in chan_table.items() if k != "loss"}
        if isinstance(chan_table, Mapping)
        else chan_table
    )
    orbit_cfg, station = orbit_tables(data, _build)
    track = build_track(orbit_cfg, station) if orbit_cfg is not None else None
    channel = _build(LinkConfig, probe_table, "channel", skip=("budget", "track"), track=track)
    if channel.max_message_bytes is not None and packets.wire_bytes > channel.max_message_bytes:
        which = "fragment_bytes" if packets.fragment_bytes is not None else "size_bytes"
        raise ScenarioError(
            f"packets.{which} = {packets.wire_bytes} exceeds channel.max_message_bytes = "
            f"{channel.max_message_bytes}; allowed: packets.fragment_bytes <= "
            f"{channel.max_message_bytes} (the service's message cap)"
        )
    budget = None
    if "budget" in data:
        d = channel.delay
        budget = _build(
            BudgetConfig,
            data["budget"],
            "budget",
            skip=BUDGET_DERIVED_KEYS,
            rate_bps=channel.rate_bps,
            packet_bytes=packets.wire_bytes,
            altitude_km=d.altitude_km if orbit_cfg is None else orbit_cfg.orbit().altitude_km,
            elevation_deg=d.elevation_deg,
            pass_max_elevation_deg=d.max_elevation_deg if d.elevation_mode == "pass" else None,
            min_elevation_deg=d.min_elevation_deg,
        )
    channel = _build(
        LinkConfig, chan_table, "channel", skip=("budget", "track"), budget=budget, track=track
    )
    fec = _build(FecConfig, data.get("fec", {}), "fec")
    _check_timing(channel, packets.wire_bytes)
    check_keys_read(channel, [o.partition("=")[0] for o in overrides], "--set")
    return Scenario(
        info,
        packets,
        channel,
        budget,
        source,
        overrides,
        fec,
        orbit=orbit_cfg,
        ground_station=station,
    )


# Simulated times beyond this lose the precision to tell messages apart (a float at 1e20 s
# cannot add a 60 s interval), and 31 years is past any plan: larger times are refused at load.
MAX_TIME_S = 1e9


def _check_timing(channel: LinkConfig, wire_bytes: int) -> None:
    """Every time within :data:`MAX_TIME_S`, one message's time on air too, and a visibility
    window at least one message long (else nothing could ever be sent)."""
    on_air_s = 8 * wire_bytes / channel.rate_bps
    if not on_air_s <= MAX_TIME_S:
        raise ScenarioError(
            f"channel.rate_bps = {channel.rate_bps!r}: one {wire_bytes}-byte message would take "
            f"{on_air_s:g} s on air; allowed: rate_bps >= {8 * wire_bytes / MAX_TIME_S:.3g} "
            f"(a message within {MAX_TIME_S:g} s)"
        )
    v, d = channel.visibility, channel.delay
    times = {
        "channel.visibility.first_start_s": v.first_start_s,
        "channel.visibility.period_s": v.period_s,
        "channel.visibility.duration_s": v.duration_s,
        "channel.delay.delay_s": d.delay_s,
        "channel.delay.jitter_s": d.jitter_s,
        "channel.delay.processing_delay_s": d.processing_delay_s,
        **{f"channel.visibility.windows_s[{i}][1]": w[1] for i, w in enumerate(v.windows_s)},
    }
    for name, t in times.items():
        if t is not None and not abs(t) <= MAX_TIME_S:
            raise ScenarioError(
                f"{name} = {t:g} is beyond the simulation horizon; allowed: <= {MAX_TIME_S:g} s "
                "(about 31 years: larger times cannot keep messages apart)"
            )
    longest_s = None
    if v.mode == "windows" and v.windows_s:
        longest_s = max(end - start for start, end in v.windows_s)
    elif v.mode == "periodic":
        longest_s = channel.window_duration_s()
    if longest_s is not None and math.isfinite(longest_s) and on_air_s > longest_s:
        raise ScenarioError(
            f"a {wire_bytes}-byte message takes {on_air_s:g} s at channel.rate_bps = "
            f"{channel.rate_bps:g}, longer than the longest visibility window ({longest_s:g} s); "
            "allowed: windows at least one message long"
        )


# ---------------------------------------------------------------------------------------------
# Overrides, presets, loading
# ---------------------------------------------------------------------------------------------


def _parse_value(text: str) -> Any:
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        # bare words such as selective-repeat are strings; quoting them is optional
        return text


def check_keys_read(channel: LinkConfig, keys: Sequence[str], how: str) -> None:
    """Refuse a set key that the channel never reads in its modes (:meth:`LinkConfig.unread_keys`).

    A preset may carry fields for another mode, but a value the user sets on purpose and the
    channel ignores would give a run that silently differs from the one asked for
    (``channel.loss.p = 0.3`` under ``budget-per`` loses nothing more). ``how`` says how it was
    set (``--set``; empty where the caller's message names the key). Setting an unread field
    to its neutral default (``shadow_db = 0`` under ``bernoulli``) asks for what happens
    anyway, and passes.
    """
    unread = set(channel.unread_keys())
    for key in (k.strip() for k in keys):
        if key not in unread:
            continue
        _, table, name = key.split(".")
        config = getattr(channel, table)
        default = next(f.default for f in dataclasses.fields(config) if f.name == name)
        if getattr(config, name) == default:
            continue
        if table == "delay":
            what = f"channel.delay.mode = {config.mode!r} with elevation_mode = "
            what += f"{config.elevation_mode!r} reads only " + ", ".join(config.read_fields())
        elif table in ("loss", "visibility"):
            switch = "model" if table == "loss" else "mode"
            what = f"channel.{table}.{switch} = {getattr(config, switch)!r} reads only "
            what += ", ".join(config.read_fields())
            if key == "channel.loss.p":
                what += '; for a random loss rate also set channel.loss.model = "bernoulli"'
        elif channel.arq.mode == "none":
            what = "channel.arq.mode = 'none' repeats nothing and has no return path"
        else:
            what = "it needs channel.return_link.mode = 'messages'"
        raise ScenarioError(f"{how + ' ' if how else ''}{key} has no effect: {what}")


def apply_overrides(data: Mapping[str, Any], overrides: Sequence[str]) -> dict[str, Any]:
    """Return a copy of ``data`` with ``"a.b.c=value"`` overrides applied.

    Values are TOML literals (``0.1``, ``true``, ``"text"``, ``[[0, 600]]``); a value that is not
    valid TOML is taken as a plain string, so ``channel.arq.mode=selective-repeat`` works.

    >>> apply_overrides({"channel": {"loss": {"p": 0.0}}}, ["channel.loss.p=0.1"])
    {'channel': {'loss': {'p': 0.1}}}
    """
    out = copy.deepcopy(dict(data))
    for item in overrides:
        if not isinstance(item, str) or "=" not in item:
            raise ScenarioError(
                f"override {item!r}: expected KEY=VALUE, for example channel.loss.p=0.1"
            )
        key, _, text = item.partition("=")
        key = key.strip()
        if key in ("scenario.origin", "scenario.overrides"):
            raise ScenarioError(
                f"override {item!r}: {key} is recorded by satlink (where the scenario came from, "
                "and the --set list), not a setting; load another file or preset instead"
            )
        parts = key.split(".")
        if not key or any(not p for p in parts):
            raise ScenarioError(f"override {item!r}: the key must be dotted names, e.g. a.b.c")
        node: dict[str, Any] = out
        for depth, part in enumerate(parts[:-1]):
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ScenarioError(
                    f"override {item!r}: {'.'.join(parts[: depth + 1])!r} is a value, not a table"
                )
            node = child
        node[parts[-1]] = _parse_value(text.strip())
    return out


def list_presets() -> list[str]:
    """Names of the built-in scenarios.

    >>> list_presets()[:2]
    ['bds3-gsmc-meo', 'bds3-rsmc-geo']
    """
    root = importlib.resources.files(PRESETS_PACKAGE)
    return sorted(p.name[: -len(".toml")] for p in root.iterdir() if p.name.endswith(".toml"))


def _read(name_or_path: str | Path) -> tuple[str, str]:
    """(text, label for messages) of a scenario file or preset."""
    text_name = str(name_or_path)
    path = Path(text_name)
    if text_name.endswith(".toml") or path.is_file():
        try:
            return path.read_text(encoding="utf-8"), text_name
        except OSError as exc:
            raise ScenarioError(
                f"{text_name}: cannot read scenario file ({exc.strerror})"
            ) from None
        except UnicodeDecodeError:
            raise ScenarioError(f"{text_name}: not a UTF-8 text file") from None
    res = importlib.resources.files(PRESETS_PACKAGE) / f"{text_name}.toml"
    if not res.is_file():
        raise ScenarioError(
            f"unknown scenario {text_name!r}: not a file, and not one of the presets "
            + ", ".join(list_presets())
        )
    return res.read_text(encoding="utf-8"), f"preset {text_name} ({text_name}.toml)"


def load_scenario(
    name_or_path: str | Path = DEFAULT_SCENARIO, overrides: Sequence[str] = ()
) -> Scenario:
    """Load a preset by name or a TOML file by path, apply overrides and validate.

    >>> load_scenario("leo-pass-budget").channel.loss.model
    'bit-errors'
    """
    text, label = _read(name_or_path)
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ScenarioError(f"{label}: invalid TOML: {exc}") from None
    try:
        data = apply_overrides(data, overrides)
    except ScenarioError as exc:
        raise ScenarioError(f"{label}: {exc}") from None
    return parse_scenario(data, str(name_or_path), overrides, label=label)
