"""The command line of :mod:`codec.train`: train, resume, fine-tune, export, average, validate.

    python -m codec.train --data ../shared/data/train --out runs/main --steps 20000
    python -m codec.train export runs/main/last.ckpt codec/weights/default.pt
    satlink codec train validate codec/weights/progic-rvq-v7.pt --data ../shared/data/train

Every ``TrainConfig`` field is an option (``--batch-size`` for ``batch_size``) with its help
from :data:`OPTION_HELP`.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path

from codec.checkpoint import average_weights, export_weights
from codec.train.depths import parse_depth_weights
from codec.train.trainer import TrainConfig, Trainer, freeze_parts, validate_weights

__all__ = ["OPTION_HELP", "cli", "main", "parse_args", "run_reporting", "trainer_from_args"]


OPTION_HELP = {
    "steps": "total steps of the schedule (a resumed run continues to this count)",
    "batch_size": "crops per step",
    "crop_px": "side of the square training crops, px (multiple of 16)",
    "lr": "peak Adam learning rate",
    "warmup_steps": "linear warm-up steps before the cosine decay",
    "lr_floor": "share of the peak rate the cosine decays to (1: constant)",
    "ema_decay": "decay of the codebooks' moving averages (0.99: a memory of ~100 steps)",
    "freeze": "parts kept fixed, comma-separated: 'encoder' (analysis and codebooks: the "
    "indices never change, only the decoder learns), 'codebooks' (no EMA update, no revival) or "
    "'borrowed' (with --init-partial: every tensor taken from the weights, and the borrowed "
    "blocks' columns of the shared FiLM table; only what starts fresh learns)",
    "stage_weight_p": "ProGIC weight shared by depths 1..S-1 (full depth gets 1-p)",
    "depth_weights": "comma-separated weights of depths 1..S for the draw, in place of "
    "--stage-weight-p's (normalised; '' uses --stage-weight-p)",
    "msssim_weight": "share of (1 - MS-SSIM) in the distortion, the rest L1",
    "chroma_weight": "weight of the chroma L1 term (keeps colour)",
    "commit_weight": "commitment loss weight, MSE(z, sg(z_q))",
    "erasure_prob": "share of samples trained with random index holes",
    "erasure_max_rate": "largest hole rate drawn for such a sample",
    "kmeans_batches": "batches of latents for the codebooks' k-means start",
    "dead_after_steps": "steps unused before a code is revived",
    "gan_weight": "PatchGAN loss weight (0: off)",
    "gan_start_step": "step at which the PatchGAN phase starts",
    "val_every": "steps between validation passes",
    "ckpt_every": "steps between checkpoints (OUT/last.ckpt)",
    "log_every": "steps between training-loss records in OUT/log.jsonl",
    "max_side_px": "downscale training images to at most this long side, px",
    "seed": "seed of crops, erasures and initialisation",
    "threads": "torch threads (0: torch's default)",
    "device": "cpu, cuda, ...",
    "channels_last": "channels-last memory layout (true/false)",
    "bf16": "bf16 autocast for the convolutions (true/false)",
    "config": "'tiny' or a JSON CodecConfig for a new model (empty: the default shape)",
    "depth_sampling": "'all' depths per sample, or 'one' drawn per sample (6.5x cheaper)",
    "encoder_grad": "'all' depths train the encoder, or only the 'full' depth",
    "quantizer_grad": "'ste' (straight-through) or 'rotation' (rotation trick) to the encoder",
    "beam_width": "quantize a share of the training batches by the encoder's beam search with "
    "this many paths (1: never), so the decoder learns what --beam-width sends",
    "beam_share": "share of the training batches the beam quantizes (with --beam-width > 1)",
    "max_images": "use only the first N images (0: all)",
    "init_partial": "with --init-weights of another shape: take the tensors that fit, the rest "
    "start fresh (true/false)",
    "progress": "progress bar on stderr (true/false)",
    "max_wall_s": "stop this invocation after so many seconds, with a checkpoint (0: no limit)",
    "lr_clock": "what the cosine decay runs on: 'steps' (to --steps) or 'wall' (to --max-wall-s)",
    "export_every": "also write exported weights OUT/step_N.pt every N steps (0: never)",
    "export_keep": "how many step_N.pt exports to keep",
}


def _bool(text: str) -> bool:
    if text.lower() in ("1", "true", "yes"):
        return True
    if text.lower() in ("0", "false", "no"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def _depth_weights(text: str) -> str:
    if text:
        try:
            parse_depth_weights(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def _parts(text: str) -> str:
    try:
        freeze_parts(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def parse_args(argv: list[str] | None = None, prog: str = "python -m codec.train") -> TrainConfig:
    p = argparse.ArgumentParser(
        prog=prog,
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--data", required=True, help="folder of training images or a codec.pack .npz (never Kodak)"
    )
    p.add_argument("--out", required=True, help="run folder for checkpoints and log.jsonl")
    p.add_argument("--resume", action="store_true", help="continue from OUT/last.ckpt")
    p.add_argument("--init-weights", default="", help="start from exported weights (fine-tune)")
    for f, default in vars(TrainConfig(data="", out="")).items():
        if f in ("data", "out"):
            continue
        flag = "--" + f.replace("_", "-")
        text = f"{OPTION_HELP[f]} (default {default!r})"
        p.add_argument(
            flag,
            type=_bool
            if isinstance(default, bool)
            else {"freeze": _parts, "depth_weights": _depth_weights}.get(f, type(default)),
            default=default,
            help=text,
        )
    args = p.parse_args(argv)
    if "borrowed" in freeze_parts(args.freeze) and not (args.init_partial and args.init_weights):
        p.error("--freeze borrowed needs --init-weights with --init-partial true")
    return args


def cli(argv: list[str] | None = None) -> int:
    """``python -m codec.train``: :func:`main`, with a bad file or setting reported in one line
    and exit status 2, as ``satlink codec train`` reports it (not a traceback).

    >>> cli(["average", "out.pt", "no-such-export.pt"])
    2
    """
    prog = "python -m codec.train"
    return run_reporting(prog, lambda: main(argv, prog))


def run_reporting(prog: str, fn: Callable[[], int | None]) -> int:
    """``fn()``'s exit status (0 for None), with input, file and environment errors as one line
    on stderr and status 2, and an interrupt as status 130; for the training tools' entry points."""
    try:
        status = fn()
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
    # Input, files and environment, as satlink's CLI counts them (CheckpointError, the config's
    # checks and an unknown --init-weights model included); anything else is a bug: a traceback.
    except (OSError, ValueError, LookupError, EOFError) as exc:
        text = next((line for line in str(exc).splitlines() if line.strip()), type(exc).__name__)
        print(f"{prog}: error: {text}", file=sys.stderr)
        return 2
    return status or 0


def main(argv: list[str] | None = None, prog: str = "python -m codec.train") -> None:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "export":
        p = argparse.ArgumentParser(prog=f"{prog} export", description="checkpoint -> weights")
        p.add_argument("ckpt", help="a training checkpoint (last.ckpt)")
        p.add_argument("dest", help="the .pt weight file to write")
        p.add_argument("--name", default="custom", help="model name recorded in the file")
        p.add_argument(
            "--model-id",
            type=int,
            default=0,
            help="id carried in packet headers: a release's own id, or 0 (not a release; "
            "decode with the same file)",
        )
        p.add_argument("--half", action="store_true", help="store the tensors as fp16")
        p.add_argument(
            "--pack", action="store_true", help="compress the tensors losslessly (releases)"
        )
        p.add_argument(
            "--delta-from",
            default=None,
            help="store the tensors as a lossless difference from this weight file (older "
            "releases; the file must ship beside it under its name)",
        )
        a = p.parse_args(argv[1:])
        delta = Path(a.delta_from) if a.delta_from else None
        meta = export_weights(
            Path(a.ckpt), Path(a.dest), a.model_id, a.name, a.half, a.pack, delta_from=delta
        )
        print(json.dumps(meta, indent=1))
        return
    if argv and argv[0] == "average":
        p = argparse.ArgumentParser(
            prog=f"{prog} average", description="average a run's step_N.pt exports (SWA)"
        )
        p.add_argument("dest", help="the .pt weight file to write")
        p.add_argument("weights", nargs="+", help="exported weight files of one run")
        p.add_argument("--half", action="store_true", help="store the tensors as fp16")
        a = p.parse_args(argv[1:])
        meta = average_weights([Path(w) for w in a.weights], Path(a.dest), a.half)
        print(json.dumps(meta, indent=1))
        return
    if argv and argv[0] == "validate":
        p = argparse.ArgumentParser(
            prog=f"{prog} validate",
            description="validation figures of a weight file, as training logs them",
        )
        p.add_argument("weights", help="an exported .pt weight file")
        p.add_argument("--data", required=True, help="the training folder (its held-out images)")
        p.add_argument("--crop-px", type=int, default=256, help="training crop size it assumes")
        a = p.parse_args(argv[1:])
        print(json.dumps(validate_weights(Path(a.weights), a.data, a.crop_px)))
        return
    trainer_from_args(parse_args(argv, prog)).run()


def trainer_from_args(args: argparse.Namespace) -> Trainer:
    """A :class:`Trainer` for parsed options: resumed from ``--out``'s checkpoint with
    ``--resume``, else started from ``--init-weights`` (whose shape it inherits) or afresh."""
    if args.init_weights and not args.config and not args.resume:
        # A fine-tune inherits the shape of the weights it starts from (latent_norm and all).
        from codec.zoo import load_codec

        args.config = json.dumps(load_codec(args.init_weights).config.to_dict())
    fields = {k: v for k, v in vars(args).items() if k in TrainConfig.__dataclass_fields__}
    trainer = Trainer(TrainConfig(**fields))
    last = Path(args.out) / "last.ckpt"
    if args.resume and last.exists():
        trainer.load(last)
        print(f"resumed at step {trainer.step}", file=sys.stderr)
    elif args.init_weights:
        trainer.init_from_weights(Path(args.init_weights))
    return trainer
