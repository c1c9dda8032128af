"""Shipped releases: each one's recorded validation is at least its predecessor's at every
stage (issue 12's no-regression bar), and the record matches what ships."""

from __future__ import annotations

import itertools
import json

from codec.zoo import DEFAULT_MODEL, MODELS, RETIRED, WEIGHTS_DIR, load_codec

RELEASES = json.loads((WEIGHTS_DIR / "releases.json").read_text())["releases"]
SHIPPED = [r for r in RELEASES if "retired" not in r]


def test_every_shipped_model_has_a_record_and_the_default_is_the_newest() -> None:
    assert sorted(r["model_id"] for r in SHIPPED) == sorted(MODELS)
    retired = {
        r["model_id"]: (r["name"], r["retired"]["commit"]) for r in RELEASES if "retired" in r
    }
    assert retired == RETIRED
    for r in SHIPPED:
        assert MODELS[r["model_id"]] == r["name"]
        codec = load_codec(r["model_id"])
        assert (codec.model_id, codec.name) == (r["model_id"], r["name"])
        assert len(r["val_msssim"]) == len(r["val_psnr_db"]) == codec.num_stages
    assert MODELS[max(MODELS)] == DEFAULT_MODEL


def test_no_release_is_below_its_predecessor_at_any_stage() -> None:
    ordered = sorted(RELEASES, key=lambda r: r["model_id"])
    for old, new in itertools.pairwise(ordered):
        below = [
            k + 1
            for k, (a, b) in enumerate(zip(new["val_msssim"], old["val_msssim"], strict=True))
            if a < b
        ]
        assert not below, f"{new['name']} is below {old['name']} at stages {below}"


def test_no_release_from_v12_on_shrinks_stage_5_over_stage_3() -> None:
    """The model card's release rule, on the recorded figures: 7 decimals from v12 on, where
    the rule starts (4 would round v13's margin of 0.000006 into a shrink); the release gate
    checks it on freshly measured ones."""
    ordered = sorted(RELEASES, key=lambda r: r["model_id"])
    for old, new in itertools.pairwise(ordered):
        if new["model_id"] >= 12:
            gap_old = old["val_msssim"][-1] - old["val_msssim"][2]
            gap_new = new["val_msssim"][-1] - new["val_msssim"][2]
            assert gap_new >= gap_old - 1e-9, f"{new['name']}: stage 5 - 3 shrank"


def test_shipped_weights_stay_under_20_mb() -> None:
    total = sum(p.stat().st_size for p in WEIGHTS_DIR.glob("*.pt"))
    assert total < 20 * 1024 * 1024, f"{total / 2**20:.1f} MiB of weights"
