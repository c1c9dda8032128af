"""No regression between releases: every shipped model's validation figures, against the last.

    python benchmarks/bench_release_gate.py [--data ../shared/data/train] [--check-recorded]

Validates every model of ``codec.zoo.MODELS`` as ``satlink codec train validate`` does (the 28
held-out training-corpus images, 256×256 centre crops, fp32; never Kodak) and prints MS-SSIM and
PSNR per stage, the latent's participation ratio and the verdict of issue 12's bar: each release
at least its predecessor at every stage; and, from v12 on, the model card's release rule: stage 5
− stage 3 at least the predecessor's (it guards Kodak's stage 5 − stage 3 ≥ 0.02 without choosing
on Kodak). With ``--check-recorded`` it also compares the figures
with ``codec/weights/releases.json`` (what the model card quotes; the test suite checks the bar
on those) and fails if any differs by more than 1e-4. Exit code 1 when the bar fails.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from codec.train import validate_weights
from codec.zoo import MODELS, WEIGHTS_DIR

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "train"
GAP_RULE_FROM = 12  # the first release under the stage 5 - stage 3 rule (model card, item 10)


def gap(msssim: list[float]) -> float:
    """Validation stage 5 − stage 3 (the last stage minus the third)."""
    return msssim[-1] - msssim[2]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--check-recorded", action="store_true")
    args = ap.parse_args()
    recorded = json.loads((WEIGHTS_DIR / "releases.json").read_text())["releases"]
    ok, previous = True, None
    print("| model id | name | MS-SSIM at 1 … 5 stages | PSNR (dB) at 1 … 5 | latent PR | bar |")
    print("|---:|---|---|---|---:|---|")
    for model_id in sorted(MODELS):
        name = MODELS[model_id]
        got = validate_weights(WEIGHTS_DIR / f"{name}.pt", args.data)
        ms, ps = got["val_msssim"], got["val_psnr"]
        verdict = "oldest shipped"
        if previous is not None:
            below = [k + 1 for k, (a, b) in enumerate(zip(ms, previous, strict=True)) if a < b]
            verdict = "met" if not below else f"**missed** at stages {below}"
            ok &= not below
            if model_id >= GAP_RULE_FROM and gap(ms) < gap(previous):
                verdict += f"; **stage 5 − 3 shrank** ({gap(previous):+.5f} → {gap(ms):+.5f})"
                ok = False
        print(
            f"| {model_id} | {name} | {' / '.join(f'{v:.4f}' for v in ms)} | "
            f"{' / '.join(f'{v:.2f}' for v in ps)} | "
            f"{got['latent_participation_ratio']:.2f} | {verdict} |"
        )
        if args.check_recorded:
            want = next(r for r in recorded if r["model_id"] == model_id)["val_msssim"]
            if max(abs(a - b) for a, b in zip(ms, want, strict=True)) > 1e-4:
                print(f"{name}: measured {ms}, releases.json says {want}", file=sys.stderr)
                ok = False
        previous = ms
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
