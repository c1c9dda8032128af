"""The comparison that answers "what should I send?": the same image over the same scenario, for
a grid of loss settings (Bernoulli and Gilbert-Elliott), as six arms at the same bytes on the wire.

* ``rvq``: the progressive RVQ code, every stage, nothing else;
* ``rvq-uep``: RVQ stages with Reed-Solomon repair packets, one ratio per stage (unequal
  protection): as many leading stages as fit the budget with their repairs, and what budget is
  left as more repairs for stage 1 (the plain sources when not even stage 1 fits with its
  repairs);
* ``rvq-arq``: RVQ with selective-repeat ARQ, its leading packets sized so that the expected
  transmissions (sources / (1 - loss)) fit the budget;
* ``avif``: the best AVIF file that fits the budget;
* ``avif-fec``: a smaller AVIF file plus repair packets at ``rvq-uep``'s repair overhead;
* ``avif-arq``: an AVIF file sized as ``rvq-arq``'s sources, with ARQ.

The budget is the RVQ code's packet count. Each replication runs the replay's own
:func:`satlink.replay.transmit`; seeds are common to all arms (common random numbers). Outputs:
``compare.csv`` (per arm, model and loss: median and 10-90% of final MS-SSIM and of time to
MS-SSIM 0.8; ``p_stage1_complete``, the probability of a picture worth the name (RVQ: its first
stage whole; a file: whole) and ``p_any_picture`` (any preview at all, even from later RVQ stages
alone), each with a 10-90% bootstrap band; messages sent), ``replications.csv`` and
``compare.png`` (final MS-SSIM, ``p_stage1_complete`` and time to MS-SSIM 0.8 against loss).

>>> loss_overrides("gilbert-elliott", 0.2)[-5:-3]
['channel.loss.model=gilbert-elliott', 'channel.loss.p=0.05']
>>> result = compare("bds3-rsmc-geo", losses=[0.0, 0.1], seeds=20, out_dir="cmp")  # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from satlink.packets import (
    FecConfig,
    TransmitPlan,
    byte_capacity,
    packetize,
    packetize_bytes,
    parse_packet,
    plan_transmission,
    protect,
)
from satlink.replay import transmit
from satlink.scenario import DEFAULT_SCENARIO, Scenario, load_scenario
from satlink.sweep.results import csv_text, quantile
from satlink.sweep.worker import ScoresOnlyCache

__all__ = [
    "ARMS",
    "COMPARE_FILES",
    "DEFAULT_LOSSES",
    "DEFAULT_RATIOS",
    "LOSS_MODELS",
    "CompareResult",
    "arm_plan",
    "compare",
    "loss_overrides",
]

ARMS: tuple[str, ...] = ("rvq", "rvq-uep", "rvq-arq", "avif", "avif-fec", "avif-arq")
LOSS_MODELS: tuple[str, ...] = ("bernoulli", "gilbert-elliott")
DEFAULT_LOSSES: tuple[float, ...] = (0.0, 0.05, 0.1, 0.2, 0.3)
DEFAULT_RATIOS: tuple[float, ...] = (1.0, 0.1, 0.1, 0.1, 0.1)
GE_BURST_MESSAGES = 5.0  # mean Gilbert-Elliott burst: r = 1 / 5; every message lost in a burst
TARGET_MS_SSIM = 0.8
COMPARE_FILES = ("compare.csv", "replications.csv", "compare.png")  # what --out receives


def loss_overrides(model: str, loss: float) -> list[str]:
    """Scenario overrides for a loss model at long-run loss ``loss`` (Gilbert-Elliott: bursts
    of mean length :data:`GE_BURST_MESSAGES`, all lost; good state lossless). A preset's extra
    service loss, where the loss table has one, is set to 0: ``loss`` is all the loss."""
    from satlink.channel import LossConfig

    names = {f.name for f in dataclasses.fields(LossConfig)}
    extra = ["channel.loss.service_loss_p=0.0"] if "service_loss_p" in names else []
    if model == "bernoulli":
        return ["channel.loss.model=bernoulli", f"channel.loss.p={loss:g}", *extra]
    if model != "gilbert-elliott":
        raise ValueError(f"loss model {model!r}: choose from {', '.join(LOSS_MODELS)}")
    r = 1.0 / GE_BURST_MESSAGES
    p = loss * r / (1.0 - loss) if loss < 1 else 1.0
    return [
        *extra,
        "channel.loss.model=gilbert-elliott",
        f"channel.loss.p={p:.6g}",
        f"channel.loss.r={r:g}",
        "channel.loss.loss_good=0.0",
        "channel.loss.loss_bad=1.0",
    ]


@dataclass
class ArmPlan:
    """One arm's packets on the wire, ready for :func:`satlink.replay.transmit`."""

    arm: str
    plan: TransmitPlan | None  # None: no file fits
    arq: bool
    info: dict[str, Any] = field(default_factory=dict)


def _stages_of(sources: list[bytes]) -> list[int]:
    return [parse_packet(p).stage for p in sources]


def arm_plan(
    arm: str,
    sc: Scenario,
    image: np.ndarray,
    code: Any,
    ratios: Sequence[float],
    loss: float,
    classical: str = "avif",
    fits: dict[tuple[str, int], Any] | None = None,
) -> ArmPlan:
    """The packets of one arm at budget = the RVQ code's packet count (see the module doc).
    ``fits`` caches classical files by (codec, packets): fitting is the slow part."""
    from codec.classical import fit_classical

    size = sc.packets.size_bytes
    sources = packetize(code, size, message_id=1, order=sc.packets.order)
    budget = len(sources)
    stages = _stages_of(sources)
    none = FecConfig()
    fec = FecConfig("reed-solomon", tuple(ratios))
    protected = protect(sources, fec)
    uep_stages = 0
    for s in range(1, code.indices.shape[0] + 1):  # most leading stages whose packets fit
        used = sum(parse_packet(p).stage < s for p in protected.packets)
        if used <= budget:
            uep_stages = s
    uep = [p for p in protected.packets if parse_packet(p).stage < uep_stages]
    # The same bytes on the wire: budget left over goes to more repairs for stage 1.
    k1 = max(1, stages.count(0))
    boosted = list(ratios)
    while uep_stages and len(uep) < budget:
        boosted[0] += 1.0 / k1
        more = protect(sources, FecConfig("reed-solomon", tuple(boosted))).packets
        more = [p for p in more if parse_packet(p).stage < uep_stages]
        if len(more) > budget or len(more) == len(uep):
            break
        uep = more
    if not uep_stages:
        # Not even stage 1 fits with its repairs (a picture of one or two packets): no
        # protection fits the budget, so the arm sends the plain sources, not nothing.
        uep = list(sources)
    covered = sum(st < uep_stages for st in stages)  # sources with repairs
    overhead = (len(uep) - covered) / covered if covered else 0.0
    arq_budget = max(1, math.floor(budget * (1.0 - loss) + 1e-9))
    if arm in ("rvq", "rvq-uep", "rvq-arq"):
        if arm == "rvq":
            chosen, arq = sources, False
        elif arm == "rvq-uep":
            chosen, arq = uep, False
        else:
            chosen, arq = sources[:arq_budget], True  # stage-major: a prefix is leading stages
        reliable = [True] * len(chosen)
        plan = plan_transmission(chosen, sc.packets, reliable, fec=none)
        plan.repair_count = sum(_is_repair(p) for p in chosen)
        return ArmPlan(arm, plan, arq, {"packets": len(chosen), "budget_packets": budget})
    if arm not in ARMS:
        raise ValueError(f"arm {arm!r}: choose from {', '.join(ARMS)}")
    if arm == "avif":
        n_src, ratio, arq = budget, 0.0, False
    elif arm == "avif-fec":
        n_src = budget
        while n_src > 1 and n_src + math.ceil(overhead * n_src - 1e-9) > budget:
            n_src -= 1
        ratio, arq = overhead, False
    else:
        n_src, ratio, arq = arq_budget, 0.0, True
    fits = {} if fits is None else fits
    if (classical, n_src) not in fits:
        fits[classical, n_src] = fit_classical(image, classical, n_src * byte_capacity(size))
    fit = fits[classical, n_src]
    info = {"budget_packets": budget, "file_packets": n_src}
    if fit.miss:
        return ArmPlan(arm, None, arq, {**info, "packets": 0})
    packets = packetize_bytes(fit.data, size, message_id=1, content_type=f"image/{classical}")
    if ratio > 0:
        packets = protect(packets, FecConfig("reed-solomon", (ratio,))).packets
    plan = plan_transmission(packets, sc.packets, [True] * len(packets), fec=none)
    return ArmPlan(arm, plan, arq, {**info, "packets": len(packets), "file_bytes": len(fit.data)})


def _is_repair(raw: bytes) -> bool:
    return (raw[0] >> 2) & 3 >= 2


@dataclass
class CompareResult:
    """``rows``: one per replication; ``summary``: one per (model, loss, arm)."""

    rows: list[dict[str, Any]]
    summary: list[dict[str, Any]]
    out_dir: Path | None

    def figure(self):
        """Expected final MS-SSIM, probability of any picture and time to MS-SSIM 0.8 against
        loss, one column per loss model, 10-90% bands."""
        # A bare Figure, not pyplot: no global backend switch, so notebooks keep inline plots.
        from matplotlib.figure import Figure

        models = [m for m in LOSS_MODELS if any(r["loss_model"] == m for r in self.summary)]
        fig = Figure(figsize=(5.2 * len(models), 9.5))
        axes = fig.subplots(3, len(models), squeeze=False)
        panels = (
            ("final_ms_ssim", "final MS-SSIM (mean)"),
            ("p_stage1_complete", "P(picture): RVQ stage 1 or file whole"),
            ("time_to_msssim_0.8_s", "time to MS-SSIM 0.8 (min)"),
        )
        styles = {a: ("-" if a.startswith("rvq") else "--") for a in ARMS}
        finite = [
            r[f"time_to_msssim_0.8_s_{q}"] / 60.0
            for r in self.summary
            for q in ("median", "p10", "p90")
            if math.isfinite(r[f"time_to_msssim_0.8_s_{q}"])
        ]
        never = 1.15 * max(finite, default=1.0) + 0.5  # minutes: where "never" is drawn
        x_max = max((100 * r["loss"] for r in self.summary), default=1.0)
        colours = dict(zip(ARMS, ("C0", "C2", "C4", "C1", "C3", "C5"), strict=True))
        for col, model in enumerate(models):
            for row, (key, label) in enumerate(panels):
                ax = axes[row][col]
                for arm in ARMS:
                    rs = [r for r in self.summary if r["loss_model"] == model and r["arm"] == arm]
                    if not rs:
                        continue
                    x = [100 * r["loss"] for r in rs]
                    scale = 60.0 if key.startswith("time") else 1.0
                    centre = "mean" if key == "final_ms_ssim" else "median"
                    mid = np.array([r[f"{key}_{centre}"] for r in rs], float) / scale
                    lo = np.array([r[f"{key}_p10"] for r in rs], float) / scale
                    hi = np.array([r[f"{key}_p90"] for r in rs], float) / scale
                    if key.startswith("time"):  # never reached (inf): drawn at the "never" line
                        mid, lo, hi = (np.where(np.isinf(v), never, v) for v in (mid, lo, hi))
                    c = colours[arm]
                    ax.plot(x, mid, styles[arm], color=c, marker="o", ms=3, label=arm)
                    ax.fill_between(x, lo, hi, color=c, alpha=0.12, linewidth=0)
                if key.startswith("time"):
                    ax.axhline(never, color="k", lw=0.8, ls=":")
                    ax.text(x_max, never, "never ", ha="right", va="bottom", fontsize=8)
                ax.set_ylabel(label)
                ax.grid(alpha=0.3)
                if row == 0:
                    ax.set_title(f"{model} loss")
                if row == 2:
                    ax.set_xlabel("message loss (%)")
        axes[0][0].legend(fontsize=8, ncol=2)
        fig.suptitle(
            "Same image, scenario and bytes on the wire; line: mean (MS-SSIM) or median; "
            "band: 10-90%"
        )
        fig.tight_layout()
        return fig

    @classmethod
    def read(cls, out_dir: str | Path) -> CompareResult:
        """A result from the ``compare.csv`` and ``replications.csv`` a run wrote (to redraw)."""
        out = Path(out_dir)

        def load(name: str) -> list[dict[str, Any]]:
            import csv

            with open(out / name, newline="", encoding="utf-8") as f:
                rows = list(csv.DictReader(f))
            for row in rows:
                for k, v in row.items():
                    try:
                        row[k] = float(v) if k not in ("loss_model", "arm") else v
                    except ValueError:
                        row[k] = v == "True" if v in ("True", "False") else v
            return rows

        return cls(load("replications.csv"), load("compare.csv"), out)

    def write(self, out_dir: str | Path) -> Path:
        """``compare.csv``, ``replications.csv`` and ``compare.png`` into ``out_dir``, a folder
        this run owns (:func:`satlink.outdir.write_files`)."""
        import io

        from satlink.outdir import write_files

        png = io.BytesIO()
        self.figure().savefig(png, format="png", dpi=110)
        cols = list(self.summary[0]) if self.summary else []
        rcols = list(self.rows[0]) if self.rows else []
        texts = (csv_text(cols, self.summary), csv_text(rcols, self.rows))
        data = (*(t.encode("utf-8") for t in texts), png.getvalue())
        write_files(out_dir, dict(zip(COMPARE_FILES, data, strict=True)), kind="compare")
        return Path(out_dir)


def _bands(values: list[float]) -> dict[str, float]:
    v = sorted(values)
    return {"median": quantile(v, 0.5), "p10": quantile(v, 0.1), "p90": quantile(v, 0.9)}


def _bootstrap(flags: list[bool], seed: int) -> dict[str, float]:
    a = np.asarray(flags, float)
    rng = np.random.default_rng(seed)
    means = a[rng.integers(0, len(a), (400, len(a)))].mean(axis=1)
    return {
        "median": float(a.mean()),
        "p10": float(np.quantile(means, 0.1)),
        "p90": float(np.quantile(means, 0.9)),
    }


def compare(
    scenario: str | Path | Scenario = DEFAULT_SCENARIO,
    image: str | Path | np.ndarray | None = None,
    *,
    losses: Sequence[float] = DEFAULT_LOSSES,
    loss_models: Sequence[str] = LOSS_MODELS,
    seeds: int = 20,
    ratios: Sequence[float] = DEFAULT_RATIOS,
    arms: Sequence[str] = ARMS,
    root_seed: int = 0,
    codec: Any = None,
    overrides: Sequence[str] = (),
    out_dir: str | Path | None = None,
    progress: bool = False,
    side_px: int | None = None,
) -> CompareResult:
    """Run every arm at every loss setting for ``seeds`` replications (see the module doc);
    ``side_px`` resizes the image to a square of that side first."""
    from codec import default_codec, load_image
    from codec.classical import MISS_GREY
    from codec.metrics import ms_ssim
    from satlink.replay import default_image

    if out_dir is not None:  # refused before minutes of replays, not after
        from satlink.outdir import OutputFolder

        OutputFolder(out_dir, kind="compare").check(COMPARE_FILES)
    codec = codec or default_codec()
    pixels = default_image() if image is None else load_image(image)
    if side_px is not None:
        from PIL import Image

        resized = Image.fromarray(pixels).resize((side_px, side_px), Image.Resampling.LANCZOS)
        pixels = np.asarray(resized)
    base = (
        scenario.with_overrides(list(overrides))
        if isinstance(scenario, Scenario)
        else load_scenario(scenario, list(overrides))
    )
    bad = [a for a in arms if a not in ARMS]
    if bad:
        raise ValueError(f"arm {bad[0]!r}: choose from {', '.join(ARMS)}")
    if seeds < 1:
        raise ValueError(f"seeds = {seeds}: need at least 1")
    code = codec.encode(pixels)
    floor = ms_ssim(pixels, np.full_like(pixels, MISS_GREY))
    seq = np.random.SeedSequence(root_seed).spawn(seeds)
    seed_values = [int(s.generate_state(2, np.uint64)[0] >> np.uint64(1)) for s in seq]
    cache = ScoresOnlyCache(4096)
    fits: dict[tuple[str, int], Any] = {}
    rows: list[dict[str, Any]] = []
    settings = [(m, float(p)) for m in loss_models for p in losses]
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(settings) * len(arms) * seeds, unit="run", desc="compare")
    for model, loss in settings:
        sc = base.with_overrides(loss_overrides(model, loss))
        for arm in arms:
            ap = arm_plan(arm, sc, pixels, code, ratios, loss, fits=fits)
            arm_sc = sc.with_overrides(["channel.arq.mode=selective-repeat"]) if ap.arq else sc
            for r, seed in enumerate(seed_values):
                row = {"loss_model": model, "loss": loss, "arm": arm, "replicate": r, "seed": seed}
                row.update(packets=ap.info.get("packets", 0), budget=ap.info["budget_packets"])
                if ap.plan is None:
                    row.update(final_ms_ssim=floor, any_picture=False, stage1_complete=False)
                    row["messages_sent"] = 0
                    row["time_to_msssim_0.8_s"] = math.inf
                else:
                    tx = transmit(
                        arm_sc, ap.plan, seed=seed, codec=codec, reference=pixels, cache=cache,
                        keep_images=False,
                    )  # fmt: skip
                    pv = tx.previews
                    t08 = next(
                        (p.t_arrival_s for p in pv if p.scores["ms_ssim"] >= TARGET_MS_SSIM),
                        math.inf,
                    )
                    on_air = ("delivered", "lost", "corrupted", "retransmitted")
                    row.update(
                        final_ms_ssim=pv[-1].scores["ms_ssim"] if pv else floor,
                        any_picture=bool(pv),
                        # a picture worth the name: RVQ's first stage whole, or the whole file
                        stage1_complete=bool(pv)
                        and (arm.startswith("avif") or pv[-1].stages_complete >= 1),
                        messages_sent=sum(t["outcome"] in on_air for t in tx.trace_rows),
                    )
                    row["time_to_msssim_0.8_s"] = t08
                rows.append(row)
                if bar is not None:
                    bar.update(1)
    if bar is not None:
        bar.close()
    summary = []
    for model, loss in settings:
        for arm in arms:
            rs = [x for x in rows if (x["loss_model"], x["loss"], x["arm"]) == (model, loss, arm)]
            s: dict[str, Any] = {"loss_model": model, "loss": loss, "arm": arm}
            s["replications"] = len(rs)
            s["packets"] = rs[0]["packets"]
            s["budget_packets"] = rs[0]["budget"]
            for key in ("final_ms_ssim", "time_to_msssim_0.8_s"):
                for q, v in _bands([x[key] for x in rs]).items():
                    s[f"{key}_{q}"] = v
            for q, v in _bootstrap([x["any_picture"] for x in rs], root_seed).items():
                s[f"p_any_picture_{q}"] = v
            for q, v in _bootstrap([x["stage1_complete"] for x in rs], root_seed).items():
                s[f"p_stage1_complete_{q}"] = v
            s["final_ms_ssim_mean"] = float(np.mean([x["final_ms_ssim"] for x in rs]))
            s["messages_sent_median"] = quantile(sorted(x["messages_sent"] for x in rs), 0.5)
            summary.append(s)
    result = CompareResult(rows, summary, Path(out_dir) if out_dir is not None else None)
    if out_dir is not None:
        result.write(out_dir)
    return result
