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


def test_shipped_weights_stay_under_20_mb() -> None:
    total = sum(p.stat().st_size for p in WEIGHTS_DIR.glob("*.pt"))
    assert total < 20 * 1024 * 1024, f"{total / 2**20:.1f} MiB of weights"
