"""Monte Carlo sweeps: grid parsing, seeds, tables, resume, cache, and local == Dask."""

from __future__ import annotations

import csv
import io
import math
import sys

import numpy as np
import pytest
import torch

from satlink.replay import replay
from satlink.sweep import (
    SweepError,
    expand_grid,
    parse_grid,
    quantile,
    replication_seeds,
    sweep,
    worker,
)

torch.set_num_threads(1)

SCENARIO = "geo-burst-arq"  # burst loss, jitter (reordering) and ARQ: the hard case
GRID = {"channel.arq.mode": ["none", "selective-repeat"]}
PAYLOADS = ("rvq", "jpeg")
SEEDS = 4


@pytest.fixture(scope="module")
def image(small_image) -> dict[str, np.ndarray]:
    return {"astro128": small_image}


def run(image, **kw):
    args = {
        "grid": GRID,
        "seeds": SEEDS,
        "images": image,
        "payloads": PAYLOADS,
        "workers": 0,
        "root_seed": 7,
    }
    args.update(kw)
    return sweep(SCENARIO, **args)


@pytest.fixture(scope="module")
def inline(image, tmp_path_factory):
    return run(image, out_dir=tmp_path_factory.mktemp("inline"))


def tables(result) -> tuple[str, str, str]:
    return result.results_csv(), result.replications_csv(), result.summary_csv()


def read_csv(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


# -- grid and seeds ------------------------------------------------------------------------------


def test_parse_grid_forms():
    g = parse_grid(["channel.loss.p=0,0.05", "channel.visibility.windows_s=[[0, 60]],[[0, 9]]"])
    assert g == {"channel.loss.p": [0, 0.05], "channel.visibility.windows_s": [[[0, 60]], [[0, 9]]]}
    assert parse_grid("packets.order=stage-major,position-major") == {
        "packets.order": ["stage-major", "position-major"]
    }
    assert parse_grid({"channel.loss.p": np.array([0.1, 0.2])}) == {"channel.loss.p": [0.1, 0.2]}
    assert parse_grid(None) == {}
    assert expand_grid({"a.b": [1, 2], "c.d": [3]}) == [{"a.b": 1, "c.d": 3}, {"a.b": 2, "c.d": 3}]


@pytest.mark.parametrize(
    ("grid", "message"),
    [
        (["channel.loss.p"], "expected KEY=V1,V2"),
        (["channel.loss.p="], "no values"),
        (["channel.loss.p=0.1,,0.2"], "empty value"),
        (["channel.loss.p=[0.1"], "unclosed bracket"),
        (["channel.loss.p=0.1]"], "unbalanced"),
        (["channel.loss.p=0.1", "channel.loss.p=0.2"], "given twice"),
        (["channel.loss.p=0.1,0.1"], "listed twice"),
        (["chan..loss=1"], "dotted names"),
        (["scenario.name=x,y"], "does not change the simulation"),
        ({"channel.loss.p": 0.1}, "expected a list"),
    ],
)
def test_bad_grid_syntax_is_named(grid, message):
    with pytest.raises(SweepError, match=message):
        parse_grid(grid)


@pytest.mark.parametrize(
    ("grid", "message"),
    [
        (["channel.loss.q=0.1,0.2"], r"grid key 'channel\.loss\.q' does not exist.*loss_bad"),
        (["nosuch.key=1"], r"grid key 'nosuch\.key' does not exist"),
        (["channel.loss=0.1"], r"grid key 'channel\.loss' is a table"),
        (["channel.loss.p=0.1,2"], r"grid key 'channel\.loss\.p' = 2.*out of range"),
        (["channel.arq.mode=none,sometimes"], r"grid key 'channel\.arq\.mode' = \"sometimes\""),
    ],
)
def test_grid_key_errors_name_the_key(grid, message):
    with pytest.raises(SweepError, match=message):
        sweep(SCENARIO, grid=grid, seeds=1, workers=0)


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"payloads": ["rvq", "webp"]}, "unknown payload 'webp'"),
        ({"payloads": []}, "at least one"),
        ({"workers": -1}, "workers = -1"),
        ({"seeds": 0}, "seeds = 0"),
        ({"budget_packets": 0}, "budget_packets = 0"),
        ({"root_seed": -3}, "root_seed = -3"),
    ],
)
def test_bad_arguments_are_named(kw, message):
    with pytest.raises(SweepError, match=message):
        sweep(SCENARIO, **{"seeds": 1, "workers": 0, **kw})


def test_keys_that_only_make_sense_together_and_list_values(image):
    res = sweep(
        SCENARIO,
        grid=[
            "channel.visibility.mode=windows",
            "channel.visibility.windows_s=[[0, 1.5]],[[0, 1.5], [100, 700]]",
        ],
        # no loss: full quality must come from the window alone, not from a lucky draw
        overrides=["channel.arq.mode=none", "channel.loss.model=none"],
        seeds=1,
        images=image,
        workers=0,
    )
    short, long = res.replications
    assert short["channel.visibility.windows_s"] == [[0, 1.5]]
    assert short["dropped"] > 0 and short["time_to_full_quality_s"] is None
    assert long["dropped"] == 0 and long["time_to_full_quality_s"] > 100
    assert "[[0, 1.5], [100, 700]]" in res.results_csv()
    res.band_figure("packets")  # list-valued grid points still get a colour each


def test_seeds_are_spawned_prefix_stable_and_distinct():
    a = replication_seeds(7, 50)
    assert a[:10] == replication_seeds(7, 10)
    assert len(set(a)) == 50 and all(0 <= s < 2**63 for s in a)
    assert a != replication_seeds(8, 50)
    child = np.random.SeedSequence(7).spawn(3)[2]
    assert a[2] == int(child.generate_state(1, np.uint64)[0] >> np.uint64(1))


def test_quantile_counts_never_as_infinite():
    q = quantile
    # order statistics (issue 17): always a value some replication produced
    assert q([1.0, 2.0, 3.0, math.inf], 0.5) == 2.0
    assert q([1.0, 2.0, 3.0, math.inf], 0.1) == 1.0
    assert q([1.0, 2.0, 3.0, math.inf], 0.9) == math.inf
    assert q([1.0, 2.0, math.inf, math.inf], 0.5) == 2.0  # half reached it by 2.0
    assert q([1.0, 2.0, math.inf, math.inf], 0.75) == math.inf
    assert q([math.inf], 0.5) == math.inf
    assert q([0.19, 0.19, 0.974, 0.974], 0.9) == 0.974  # not an interpolated 0.739
    assert q(list(range(1, 11)), 0.1) == 1 and q(list(range(1, 11)), 0.9) == 9


# -- one local sweep -----------------------------------------------------------------------------


def test_outputs_and_columns(inline):
    out = inline.out_dir
    for name in (
        "results.csv",
        "replications.csv",
        "summary.csv",
        "sweep.json",
        "quality_vs_packets.png",
        "quality_vs_time.png",
        "report.html",
    ):
        assert (out / name).stat().st_size > 0, name
    page = (out / "report.html").read_text()
    assert f"n = {SEEDS} per row" in page and page.count("data:image/png;base64,") == 2
    n_reps = 2 * len(PAYLOADS) * SEEDS
    assert len(list((out / "replications").glob("*.json"))) == n_reps
    rows = read_csv((out / "results.csv").read_text())
    for col in (
        "channel.arq.mode",
        "payload",
        "image",
        "replicate",
        "seed",
        "packet_seq",
        "t_arrival_s",
        "outcome",
        "preview",
        "psnr_db",
        "ms_ssim",
        "messages_sent",
    ):
        assert col in rows[0], col
    reps = read_csv((out / "replications.csv").read_text())
    assert len(reps) == n_reps
    summary = read_csv((out / "summary.csv").read_text())
    assert [(r["channel.arq.mode"], r["payload"]) for r in summary] == [
        ("none", "rvq"),
        ("none", "jpeg"),
        ("selective-repeat", "rvq"),
        ("selective-repeat", "jpeg"),
    ]
    for fig in (
        "time_to_first_preview_s",
        "time_to_msssim_0.8_s",
        "time_to_msssim_0.9_s",
        "final_ms_ssim",
        "final_psnr_db",
    ):
        for q in ("median", "p10", "p90"):
            assert f"{fig}_{q}" in summary[0]
    assert "time_to_msssim_0.9_s_reached_frac" in summary[0]
    text = inline.summary_table()
    assert "first preview" in text and "selective-repeat" in text and "jpeg" in text


def test_summary_matches_replications(inline):
    for row in inline.summary:
        figs = [
            r
            for r in inline.replications
            if r["channel.arq.mode"] == row["channel.arq.mode"] and r["payload"] == row["payload"]
        ]
        assert row["replications"] == len(figs) == SEEDS
        times = sorted(
            math.inf if r["time_to_first_preview_s"] is None else r["time_to_first_preview_s"]
            for r in figs
        )
        assert row["time_to_first_preview_s_median"] == quantile(times, 0.5)
        reached = sum(r["time_to_first_preview_s"] is not None for r in figs) / len(figs)
        assert row["time_to_first_preview_s_reached_frac"] == reached
        if reached < 0.5:
            assert row["time_to_first_preview_s_median"] == math.inf


def test_classical_payload_default_budget_and_all_or_nothing(inline):
    by_key = {(r["channel.arq.mode"], r["replicate"], r["payload"]): r for r in inline.replications}
    saw_no_picture = False
    for (mode, rep, payload), r in by_key.items():
        if payload != "jpeg":
            continue
        rvq = by_key[(mode, rep, "rvq")]
        assert r["budget_packets"] == rvq["packets"]  # default: as many as the RVQ code
        assert r["packets"] <= r["budget_packets"] and r["fits"]
        assert r["previews"] <= 1  # nothing until the file is whole, then the picture
        if mode == "none" and r["lost"] > 0:
            assert r["no_picture"] and r["time_to_first_preview_s"] is None
            assert r["final_ms_ssim"] == inline._rows[0][1]["floor"]["ms_ssim"]
            saw_no_picture = True
    assert saw_no_picture, "expected a lost JPEG packet without ARQ in this small sweep"


def test_common_random_numbers_across_payloads(inline):
    seeds = {}
    for r in inline.replications:
        seeds.setdefault(r["replicate"], set()).add(r["seed"])
    assert all(len(s) == 1 for s in seeds.values())
    assert len({next(iter(s)) for s in seeds.values()}) == SEEDS


def test_a_replication_is_the_replay_of_its_seed(inline, image):
    rep = next(
        r
        for r in inline.replications
        if r["channel.arq.mode"] == "selective-repeat"
        and r["payload"] == "rvq"
        and r["retransmitted"] > 0
    )
    res = replay(
        SCENARIO,
        image["astro128"],
        seed=rep["seed"],
        keep_images=False,
        overrides=["channel.arq.mode=selective-repeat"],
    )
    mine = [
        r
        for r in inline.rows()
        if r["seed"] == rep["seed"]
        and r["payload"] == "rvq"
        and r["channel.arq.mode"] == "selective-repeat"
    ]
    assert len(mine) == len(res.rows)
    for a, b in zip(mine, res.rows, strict=True):
        assert (a["outcome"], a["packet_seq"], a["attempt"]) == (
            b["outcome"],
            b["packet_seq"],
            b["attempt"],
        )
        assert a["ms_ssim"] == b.get("ms_ssim") and a["psnr_db"] == b.get("psnr_db")
        ta = a["t_arrival_s"]
        assert (ta is None and math.isnan(b["t_arrival_s"])) or ta == b["t_arrival_s"]
    assert rep["time_to_first_preview_s"] == res.summary["time_to_first_preview_s"]
    assert rep["final_ms_ssim"] == res.summary["final_ms_ssim"]


@pytest.mark.parametrize("payload", ["rvq", "jpeg"])
def test_sweep_and_replay_give_identical_scores(inline, image, payload):
    """One code path: every figure of a replication equals the replay of its seed, for the
    same scenario, image and seed (exact equality, not approximate)."""
    checked = 0
    for rep in inline.replications:
        if rep["payload"] != payload or rep["replicate"] > 1:
            continue
        budget = None if payload == "rvq" else rep["budget_packets"]
        res = replay(
            SCENARIO,
            image["astro128"],
            seed=rep["seed"],
            keep_images=False,
            payload=payload,
            budget_packets=budget,
            overrides=[f'channel.arq.mode="{rep["channel.arq.mode"]}"'],
        )
        s = res.summary
        if rep["no_picture"]:
            assert s["previews"] == 0
        else:
            assert rep["final_ms_ssim"] == s["final_ms_ssim"]
            assert rep["final_psnr_db"] == s["final_psnr_db"]
        for fig in (
            "time_to_first_preview_s",
            "time_to_msssim_0.8_s",
            "time_to_msssim_0.9_s",
            "time_to_full_quality_s",
        ):
            assert rep[fig] == s[fig], fig
        assert rep["previews"] == s["previews"]
        assert rep["messages_sent"] == s["counts"]["transmissions"]
        assert rep["packets"] == s["counts"]["packets"]
        for name in ("delivered", "lost", "corrupted", "retransmitted", "dropped"):
            assert rep[name] == s["counts"][name], name
        mine = [r for r in inline.rows() if r["seed"] == rep["seed"] and r["payload"] == payload]
        mine = [r for r in mine if r["channel.arq.mode"] == rep["channel.arq.mode"]]
        theirs = res.rows
        assert [(r["psnr_db"], r["ms_ssim"]) for r in mine] == [
            (r.get("psnr_db"), r.get("ms_ssim")) for r in theirs
        ]
        checked += 1
    assert checked == 4


def test_band_figures(inline):
    for axis in ("packets", "time"):
        fig = inline.band_figure(axis)
        axes = fig.get_axes()
        assert len(axes) == 2
        assert "MS-SSIM" in axes[0].get_ylabel() and "dB" in axes[1].get_ylabel()
        assert ("messages" if axis == "packets" else "time") in axes[1].get_xlabel()
        labels = [line.get_label() for line in axes[0].get_lines()]
        assert "channel.arq.mode=none · jpeg (n=4)" in labels  # n: replications per line
        # 4 runs: each run drawn (thin), no band that would pretend to know the 10-90% spread
        assert not axes[0].collections
        assert sum(line.get_linewidth() < 1 for line in axes[0].get_lines()) >= 4 * 2
        assert "n=4" in axes[0].get_title()
    with pytest.raises(SweepError, match="axis"):
        inline.band_figure("bytes")


# -- cache, resume, where it runs ----------------------------------------------------------------


def test_cache_hits_and_no_cache_gives_the_same_tables(inline, image):
    assert inline.stats["decode_cache_hits"] > 0
    plain = run(image, decode_cache=False)
    assert plain.stats["decode_cache_hits"] == 0 == plain.stats["decode_cache_misses"]
    assert tables(plain) == tables(inline)


def test_resume_runs_only_what_is_missing(image, inline, tmp_path, monkeypatch):
    small = run(image, seeds=2, out_dir=tmp_path)
    assert small.stats["run"] == 2 * len(PAYLOADS) * 2
    # An interruption after two chunks: their files stay, the rest runs on the next call.
    real, calls = worker.run_chunk, []

    def flaky(*args):
        calls.append(args)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(*args)

    monkeypatch.setattr(worker, "run_chunk", flaky)
    with pytest.raises(KeyboardInterrupt):
        run(image, out_dir=tmp_path, chunk_size=1)
    monkeypatch.setattr(worker, "run_chunk", real)
    files = sorted((tmp_path / "replications").glob("*.json"))
    assert len(files) == 2 * len(PAYLOADS) * 2 + 2
    assert not list((tmp_path / "replications").glob(".*.tmp"))
    files[0].unlink()  # and one lost file is simply run again
    full = run(image, out_dir=tmp_path)
    assert full.stats["resumed"] == len(files) - 1
    assert full.stats["run"] == 2 * len(PAYLOADS) * SEEDS - (len(files) - 1)
    assert tables(full) == tables(inline)
    again = run(image, out_dir=tmp_path)
    assert again.stats["run"] == 0 and tables(again) == tables(inline)


def test_results_of_another_packet_format_are_run_again(image, tmp_path, monkeypatch):
    from satlink.sweep import store

    first = run(image, seeds=1, out_dir=tmp_path)
    assert first.stats["run"] > 0
    # The same sweep under another packet format: none of the files may be reused.
    monkeypatch.setattr(store, "PACKET_FORMAT_VERSION", store.PACKET_FORMAT_VERSION + 1)
    other = run(image, seeds=1, out_dir=tmp_path)
    assert other.stats["resumed"] == 0 and other.stats["run"] == first.stats["run"]


def test_process_pool_gives_identical_tables(image, inline):
    pooled = run(image, workers=2, chunk_size=1)  # many small chunks: any completion order
    assert pooled.stats["run"] == len(inline.replications)
    assert tables(pooled) == tables(inline)


def test_dask_local_cluster_gives_identical_tables(image, inline):
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(
        n_workers=2,
        threads_per_worker=1,
        processes=False,
        host="127.0.0.1",
        protocol="tcp://",
        dashboard_address=None,
    ) as cluster:
        assert cluster.scheduler_address.startswith("tcp://127.0.0.1:")
        on_dask = run(image, scheduler=cluster.scheduler_address, chunk_size=3)
    assert on_dask.stats["scheduler"] == cluster.scheduler_address
    assert tables(on_dask) == tables(inline)


def test_missing_dask_is_a_clear_error(image, monkeypatch):
    monkeypatch.setitem(sys.modules, "distributed", None)  # import distributed -> ImportError
    with pytest.raises(SweepError, match=r"pip install 'satlink\[dask\]'"):
        sweep(SCENARIO, seeds=1, images=image, scheduler="tcp://127.0.0.1:1", workers=0)


def test_a_grid_key_the_loss_model_never_reads_is_refused() -> None:
    from satlink.scenario import load_scenario
    from satlink.sweep.grid import point_scenarios

    # bds3-rsmc-geo's budget-per model never reads p: every point would be the same run.
    base = load_scenario("bds3-rsmc-geo")
    with pytest.raises(SweepError, match=r"channel\.loss\.p has no effect.*bernoulli"):
        point_scenarios(base, {"channel.loss.p": [0.0, 0.1]})
    points = point_scenarios(
        base.with_overrides(["channel.loss.model=bernoulli"]), {"channel.loss.p": [0.0, 0.1]}
    )
    assert [s.channel.loss.p for _, s in points] == [0.0, 0.1]
