"""What a sweep runs: grid parsing and expansion, the grid points' scenarios, seeds, images.

>>> expand_grid(parse_grid(["channel.loss.p=0,0.1"]))
[{'channel.loss.p': 0}, {'channel.loss.p': 0.1}]
"""

from __future__ import annotations

import copy
import hashlib
import itertools
import json
import math
import tomllib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from satlink.replay import PAYLOADS
from satlink.scenario import (
    Scenario,
    ScenarioError,
    apply_overrides,
    check_keys_read,
    load_scenario,
    parse_scenario,
)


class SweepError(ValueError):
    """A sweep that cannot run as asked; the message names the argument or key at fault."""


SweepError.__module__ = "satlink.sweep"  # its public home (tracebacks, pickling)


def _split_values(key: str, text: str) -> list[str]:
    """Split ``0,0.1,[[0, 60], [120, 180]]`` at top-level commas (not inside brackets/quotes)."""
    parts: list[str] = []
    cur: list[str] = []
    depth, quote = 0, ""
    for ch in text:
        if quote:
            quote = "" if ch == quote else quote
        elif ch in "\"'":
            quote = ch
        elif ch in "[{":
            depth += 1
        elif ch in "]}":
            depth -= 1
            if depth < 0:
                raise SweepError(f"grid {key}={text}: unbalanced {ch!r}")
        elif ch == "," and depth == 0:
            parts.append("".join(cur).strip())
            cur = []
            continue
        cur.append(ch)
    if quote or depth:
        raise SweepError(f"grid {key}={text}: unclosed {'quote' if quote else 'bracket'}")
    parts.append("".join(cur).strip())
    if any(not p for p in parts):
        raise SweepError(f"grid {key}={text}: empty value; expected KEY=V1,V2,...")
    return parts


def _parse_literal(text: str) -> Any:
    # Same rule as --set (satlink.scenario.apply_overrides): a TOML literal, else a bare string.
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def _check_key(key: Any, where: str) -> str:
    if not isinstance(key, str) or not key.strip():
        raise SweepError(f"{where}: grid key must be a dotted scenario key, got {key!r}")
    key = key.strip()
    parts = key.split(".")
    if any(not p.strip() or p != p.strip() for p in parts):
        raise SweepError(f"{where}: grid key {key!r} must be dotted names, e.g. channel.loss.p")
    if parts[0] == "scenario":
        raise SweepError(
            f"grid key {key!r}: the [scenario] table names the scenario and does "
            "not change the simulation; sweep a packets.*, channel.* or budget.* key"
        )
    return key


def parse_grid(grid: Mapping[str, Sequence[Any]] | Sequence[str] | str | None) -> dict[str, list]:
    """Grid keys and their values, in the order given.

    Strings are ``KEY=V1,V2,...`` as on the command line (values are TOML literals; bare words
    are strings; commas inside brackets do not split); a mapping gives the values directly.

    >>> parse_grid(["channel.loss.p=0,0.05", "packets.order=stage-major,position-major"])
    {'channel.loss.p': [0, 0.05], 'packets.order': ['stage-major', 'position-major']}
    >>> parse_grid({"channel.arq.mode": ["none", "selective-repeat"]})
    {'channel.arq.mode': ['none', 'selective-repeat']}
    >>> parse_grid(["p"])
    Traceback (most recent call last):
    ...
    satlink.sweep.SweepError: grid 'p': expected KEY=V1,V2,..., e.g. channel.loss.p=0,0.1
    """
    if grid is None:
        return {}
    out: dict[str, list] = {}
    if isinstance(grid, Mapping):
        items: Iterable[tuple[str, Any]] = grid.items()
        for key, values in items:
            key = _check_key(key, "grid")
            if isinstance(values, str | bytes) or not isinstance(values, Sequence | np.ndarray):
                raise SweepError(f"grid key {key!r}: expected a list of values, got {values!r}")
            values = [v.item() if isinstance(v, np.generic) else v for v in values]
            _add_key(out, key, values)
        return out
    if isinstance(grid, str):
        grid = [grid]
    for item in grid:
        if not isinstance(item, str) or "=" not in item:
            raise SweepError(f"grid {item!r}: expected KEY=V1,V2,..., e.g. channel.loss.p=0,0.1")
        key, _, text = item.partition("=")
        key = _check_key(key, f"grid {item!r}")
        if not text.strip():
            raise SweepError(f"grid {item!r}: no values after '='; expected KEY=V1,V2,...")
        _add_key(out, key, [_parse_literal(v) for v in _split_values(key, text.strip())])
    return out


def _add_key(out: dict[str, list], key: str, values: list) -> None:
    if key in out:
        raise SweepError(f"grid key {key!r} is given twice; list all its values once")
    if not values:
        raise SweepError(f"grid key {key!r}: no values")
    seen: list[str] = []
    for v in values:
        lit = toml_literal(v, key)
        if lit in seen:
            raise SweepError(f"grid key {key!r}: value {v!r} is listed twice")
        seen.append(lit)
    out[key] = list(values)


def expand_grid(grid: Mapping[str, Sequence[Any]]) -> list[dict[str, Any]]:
    """Every combination of the grid's values (first key varies slowest).

    >>> expand_grid({"a.x": [1, 2], "a.y": ["u", "v"]})
    [{'a.x': 1, 'a.y': 'u'}, {'a.x': 1, 'a.y': 'v'}, {'a.x': 2, 'a.y': 'u'}, {'a.x': 2, 'a.y': 'v'}]
    >>> expand_grid({})
    [{}]
    """
    keys = list(grid)
    return [
        dict(zip(keys, combo, strict=True)) for combo in itertools.product(*(grid[k] for k in keys))
    ]


def toml_literal(value: Any, key: str = "") -> str:
    """A value as a TOML literal (for ``--set KEY=VALUE`` provenance and duplicate checks)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return (
            repr(value)
            if not isinstance(value, float) or math.isfinite(value)
            else ("nan" if math.isnan(value) else ("inf" if value > 0 else "-inf"))
        )
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(toml_literal(v, key) for v in value) + "]"
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{k} = {toml_literal(v, key)}" for k, v in value.items()) + "}"
    raise SweepError(f"grid key {key!r}: value {value!r} is not a number, string, boolean or list")


def _set_key(data: dict[str, Any], key: str, value: Any) -> None:
    parts = key.split(".")
    node = data
    for i, part in enumerate(parts[:-1]):
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise SweepError(
                f"grid key {key!r}: {'.'.join(parts[: i + 1])!r} is a value, not a table"
            )
        node = child
    if isinstance(node.get(parts[-1]), dict):
        raise SweepError(
            f"grid key {key!r} is a table; sweep a key inside it, "
            f"e.g. {key}.{next(iter(node[parts[-1]]), 'name')}"
        )
    node[parts[-1]] = value


def replication_seeds(root_seed: int, count: int) -> list[int]:
    """Link seeds of replicates ``0..count-1``: ``SeedSequence(root_seed).spawn(count)``, each
    child reduced to a 63-bit integer (a CSV column, and ``satlink replay --seed`` takes it).

    Prefix-stable: the first 100 of 200 seeds are the 100 seeds of a 100-seed sweep.

    >>> replication_seeds(0, 3) == replication_seeds(0, 5)[:3]
    True
    """
    if isinstance(root_seed, bool) or not isinstance(root_seed, int | np.integer) or root_seed < 0:
        raise SweepError(f"root_seed = {root_seed!r}: expected an integer >= 0")
    children = np.random.SeedSequence(int(root_seed)).spawn(count)
    return [int(c.generate_state(1, np.uint64)[0] >> np.uint64(1)) for c in children]


@dataclass(frozen=True)
class Replication:
    """One replay of a sweep: a grid point, an image, a payload and a replicate's seed.

    ``key`` is a stable hash of everything that decides the result (the resolved scenario, the
    image's pixels, payload, budget, seed, codec weights), so it names the result file.
    """

    point_index: int
    point: tuple[tuple[str, Any], ...]
    payload: str
    image: str
    image_index: int
    replicate: int
    seed: int
    key: str


@dataclass(frozen=True)
class SweepImage:
    label: str
    pixels: np.ndarray
    digest: str


def digest(*parts: bytes, size: int = 16) -> str:
    h = hashlib.blake2b(digest_size=size)
    for p in parts:
        h.update(len(p).to_bytes(8, "big"))
        h.update(p)
    return h.hexdigest()


def canonical(obj: Any) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), allow_nan=True).encode()


def resolve_images(images: Any) -> list[SweepImage]:
    from codec import load_image
    from codec.api import DEFAULT_MAX_PIXELS

    if images is None:
        from satlink.replay import default_image

        items: list[tuple[str, Any]] = [("astronaut", default_image())]
    elif isinstance(images, str | Path):
        p = Path(images)
        if p.is_dir():
            from codec.data import IMAGE_SUFFIXES

            files = sorted(
                f for f in p.iterdir() if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES
            )
            if not files:
                raise SweepError(f"images: no image files ({', '.join(IMAGE_SUFFIXES)}) in {p}")
            items = [(f.name, f) for f in files]
        elif p.is_file():
            items = [(p.name, p)]
        else:
            raise SweepError(f"images: {p} is neither an image file nor a folder")
    elif isinstance(images, np.ndarray):
        items = [("image", images)]
    elif isinstance(images, Mapping):
        items = [(str(k), v) for k, v in images.items()]
    else:
        items = [
            (Path(x).name if isinstance(x, str | Path) else f"image{i}", x)
            for i, x in enumerate(images)
        ]
    if not items:
        raise SweepError("images: the list is empty")
    out, seen = [], set()
    for label, src in items:
        if label in seen:
            raise SweepError(f"images: two images are labelled {label!r}; labels must differ")
        seen.add(label)
        pixels = load_image(src, max_pixels=DEFAULT_MAX_PIXELS)  # refused from the header
        pixels.setflags(write=False)
        out.append(SweepImage(label, pixels, digest(str(pixels.shape).encode(), pixels.tobytes())))
    return out


def base_scenario(scenario: str | Path | Scenario, overrides: Sequence[str]) -> Scenario:
    if isinstance(scenario, Scenario):
        if not overrides:
            return scenario
        data = apply_overrides(scenario.to_dict(), overrides)
        return parse_scenario(data, scenario.origin, (*scenario.overrides, *overrides))
    return load_scenario(scenario, overrides=overrides)


def _schema() -> dict[str, bool]:
    """Every scenario key a grid may name -> whether it is a table (from the config classes,
    so keys that a file leaves at their default count too)."""
    import dataclasses
    import typing

    from satlink.channel import LinkConfig
    from satlink.linkbudget import BudgetConfig
    from satlink.scenario import BUDGET_DERIVED_KEYS, FecConfig, PacketsConfig

    out: dict[str, bool] = {}

    def walk(cls: Any, prefix: str, skip: Sequence[str] = ()) -> None:
        out[prefix] = True
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            if f.name in skip:
                continue
            tp = hints[f.name]
            if dataclasses.is_dataclass(tp):
                walk(tp, f"{prefix}.{f.name}")
            else:
                out[f"{prefix}.{f.name}"] = False

    walk(PacketsConfig, "packets")
    walk(LinkConfig, "channel", skip=("budget",))  # [budget] is its own table
    walk(BudgetConfig, "budget", skip=BUDGET_DERIVED_KEYS)
    walk(FecConfig, "fec")
    return out


def _check_grid_keys(grid: Mapping[str, list], source: str) -> None:
    schema = _schema()
    for key in grid:
        if key not in schema:
            parent = key.rpartition(".")[0]
            known = sorted(k.rpartition(".")[2] for k in schema if k.rpartition(".")[0] == parent)
            where = (
                f"keys in [{parent}]: {', '.join(known)}"
                if known
                else "top-level tables: packets, channel, budget, fec"
            )
            raise SweepError(f"grid key {key!r} does not exist in scenario {source}; {where}")
        if schema[key]:
            inner = next(k for k in schema if k.startswith(key + "."))
            raise SweepError(f"grid key {key!r} is a table; sweep a key inside it, e.g. {inner}")


def point_scenarios(base: Scenario, grid: Mapping[str, list]) -> list[tuple[dict, Scenario]]:
    _check_grid_keys(grid, base.origin)
    base_dict = base.to_dict()

    def build(point: Mapping[str, Any]) -> Scenario:
        data = copy.deepcopy(base_dict)
        for k, v in point.items():
            _set_key(data, k, v)
        # the base's overrides only: an error is about a grid key, and says so itself
        scenario = parse_scenario(data, base.origin, base.overrides)
        check_keys_read(scenario.channel, list(point), "")
        return scenario

    def where(point: Mapping[str, Any]) -> str:
        return ", ".join(f"{k} = {toml_literal(v, k)}" for k, v in point.items())

    # Each value in the context of the first grid point, so that an error names the key and
    # value at fault, while keys that only make sense together (visibility.mode = "windows"
    # with windows_s) are still checked together.
    first = {k: values[0] for k, values in grid.items()}
    checks = [first] + [{**first, k: v} for k, values in grid.items() for v in values[1:]]
    for point in checks:
        try:
            build(point)
        except ScenarioError as exc:
            changed = [k for k in point if point[k] is not first[k]] or list(point)
            if len(changed) == 1:
                k = changed[0]
                raise SweepError(f"grid key {k!r} = {toml_literal(point[k], k)}: {exc}") from None
            raise SweepError(f"grid point {where(point)}: {exc}") from None
    out = []
    for point in expand_grid(grid):
        try:
            out.append((point, build(point)))
        except ScenarioError as exc:
            raise SweepError(f"grid point {where(point)}: {exc}") from None
    return out


def check_int(name: str, value: Any, lo: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < lo:
        raise SweepError(f"{name} = {value!r}: expected an integer >= {lo}")
    return int(value)


def check_payloads(payloads: Sequence[str] | str) -> tuple[str, ...]:
    items = (payloads,) if isinstance(payloads, str) else tuple(payloads)
    if not items:
        raise SweepError(f"payloads: give at least one of {', '.join(PAYLOADS)}")
    for p in items:
        if p not in PAYLOADS:
            raise SweepError(f"payloads: unknown payload {p!r}; choose from {', '.join(PAYLOADS)}")
    if len(set(items)) != len(items):
        raise SweepError(f"payloads: {list(items)} lists a payload twice")
    return items
