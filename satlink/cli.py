"""The ``satlink`` command: a thin argparse layer over the Python API.

Every subcommand parses its arguments, calls one API function and prints what it returns.
Errors a user can fix end the run with one line and a non-zero exit; ``--debug`` shows the
traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from satlink.config import DEFAULT_PACKET_SIZE_BYTES

EXIT_USER_ERROR = 2
EXIT_INTERRUPTED = 130


def _cmd_replay(args: argparse.Namespace) -> int:
    from satlink.replay import replay

    result = replay(
        args.scenario,
        image=args.image,
        seed=args.seed,
        out_dir=args.out,
        overrides=args.set,
        progress=not args.quiet,
        order=args.order,
        interleave=args.interleave,
        lpips_weights=args.lpips_weights,
        dists_weights=args.dists_weights,
        effort=args.effort,
    )
    print(result.summary_table())
    print(f"wrote {args.out}/")
    return EXIT_INTERRUPTED if result.interrupted else 0


def _cmd_encode(args: argparse.Namespace) -> int:
    from codec import default_codec
    from satlink.packets import encode_to_files

    paths = encode_to_files(
        default_codec().encode(args.image, effort=args.effort),
        args.out,
        packet_size_bytes=args.packet_size,
        interleave=args.interleave,
        message_id=args.message_id,
    )
    size = paths[0].stat().st_size if paths else 0
    print(
        f"wrote {len(paths)} packets of {size} bytes to {args.out}/ "
        f"({paths[0].name} .. {paths[-1].name})"
    )
    return 0


def _cmd_decode(args: argparse.Namespace) -> int:
    from satlink.receiver import decode_files

    report = decode_files(args.dir, args.out)
    print(report.describe())
    return 0


def _cmd_budget(args: argparse.Namespace) -> int:
    from satlink.linkbudget import format_budget_table
    from satlink.scenario import load_scenario

    scenario = load_scenario(args.scenario, overrides=args.set)
    budget = scenario.link_budget()
    if args.json:
        print(json.dumps(budget, indent=2))
    else:
        print(format_budget_table(budget))
    return 0


def _cmd_scenarios(args: argparse.Namespace) -> int:
    from satlink.scenario import DEFAULT_SCENARIO, list_presets, load_scenario

    for name in list_presets():
        sc = load_scenario(name)
        mark = " (default)" if name == DEFAULT_SCENARIO else ""
        print(f"{name}{mark}: {sc.info.description}")
    return 0


def _cmd_codec_train(args: argparse.Namespace) -> int:
    from codec.train import main as train_main

    train_main(args.train_args)
    return 0


def _split_codec_train(argv: list[str]) -> list[str] | None:
    """Arguments after `codec train`, or None. They go to codec.train's parser untouched."""
    rest = [a for a in argv if a != "--debug"]
    return rest[2:] if rest[:2] == ["codec", "train"] else None


def _cmd_codec_eval(args: argparse.Namespace) -> int:
    from codec.eval import run_eval
    from codec.zoo import load_codec
    from satlink.packets import byte_capacity, bytes_for_stages, packets_for_stages

    def sent_bytes(code, stages: int) -> int:
        return bytes_for_stages(code, stages, packet_size_bytes=args.packet_size)

    def file_budget(code, stages: int) -> int:
        # A classical file rides the same packets, so it gets their payload bytes.
        n = packets_for_stages(
            code.latent_shape,
            stages,
            bits_per_index=code.bits_per_index,
            packet_size_bytes=args.packet_size,
        )
        return n * byte_capacity(args.packet_size)

    model = load_codec(args.model)
    codecs = tuple(c.strip() for c in args.codecs.split(",") if c.strip())
    results = run_eval(
        args.data,
        args.out,
        codecs=codecs,
        codec=model,
        bytes_for_stages=sent_bytes,
        classical_budget=file_budget,
        per_image=args.per_image,
        plot_path=args.plot,
        progress=not args.quiet,
        limit=args.limit or None,
        workers=args.workers,
        budget_label=f"whole {args.packet_size}-byte packets, headers included",
        effort=args.effort,
    )
    for name, path in results["files"].items():
        print(f"{name}: {path}")
    print(f"RD plot: {results['plot']}")
    return 0


def _cmd_sweep(args: argparse.Namespace) -> int:
    from satlink.sweep import sweep

    result = sweep(
        args.scenario,
        grid=args.grid,
        seeds=args.seeds,
        images=args.images,
        workers=args.workers,
        scheduler=args.scheduler,
        out_dir=args.out,
        root_seed=args.seed,
        payloads=["rvq", *(p for p in args.payload if p != "rvq")],  # --payload adds to RVQ
        budget_packets=args.budget_packets,
        overrides=args.set,
        progress=not args.quiet,
        effort=args.effort,
    )
    print(result.summary_table())
    print(f"wrote {args.out}/")
    return 0


def _add_effort(sp: argparse.ArgumentParser) -> None:
    sp.add_argument(
        "--effort",
        type=int,
        default=0,
        metavar="N",
        help="encoder refinement steps for the RVQ code (0..100, default 0): better indices for "
        "the same decoder, about 5 decoder passes of time per step",
    )


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="satlink", description="Replay picture transfers over satellite short-message links."
    )
    p.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    def add_common(sp: argparse.ArgumentParser) -> None:
        sp.add_argument(
            "--set",
            action="append",
            default=[],
            metavar="KEY=VALUE",
            help="override a scenario key, e.g. channel.loss.p=0.1 (repeatable)",
        )
        sp.add_argument("--quiet", action="store_true", help="no progress bar")

    from satlink.scenario import DEFAULT_SCENARIO

    sp = sub.add_parser("replay", help="replay one scenario on one image (the main job)")
    sp.add_argument(
        "scenario",
        nargs="?",
        default=DEFAULT_SCENARIO,
        help=f"preset name or TOML path (default {DEFAULT_SCENARIO})",
    )
    sp.add_argument("--image", help="source image (default: a scikit-image sample)")
    sp.add_argument("--seed", type=int, default=0)
    sp.add_argument("--out", default="replay-out", type=Path, help="output folder")
    sp.add_argument("--order", default=None, help="packet order (default: the scenario's)")
    sp.add_argument(
        "--interleave",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="spread each packet's indices across the image",
    )
    sp.add_argument("--lpips-weights", type=Path, help="local LPIPS weight file (optional)")
    sp.add_argument("--dists-weights", type=Path, help="local DISTS weight file (optional)")
    _add_effort(sp)
    add_common(sp)
    sp.set_defaults(func=_cmd_replay)

    sp = sub.add_parser("encode", help="encode an image into packet files")
    sp.add_argument("image")
    sp.add_argument("--out", required=True, type=Path)
    sp.add_argument(
        "--packet-size", type=int, default=DEFAULT_PACKET_SIZE_BYTES, help="bytes per packet"
    )
    sp.add_argument("--interleave", action="store_true")
    sp.add_argument("--message-id", type=int, default=1)
    _add_effort(sp)
    sp.set_defaults(func=_cmd_encode)

    sp = sub.add_parser("decode", help="decode whatever packet files are present")
    sp.add_argument("dir", type=Path)
    sp.add_argument("--out", required=True, type=Path, help="preview PNG path")
    sp.set_defaults(func=_cmd_decode)

    sp = sub.add_parser("budget", help="link budget of a scenario")
    sp.add_argument("scenario", nargs="?", default=DEFAULT_SCENARIO)
    sp.add_argument("--json", action="store_true", help="every input and term as JSON")
    add_common(sp)
    sp.set_defaults(func=_cmd_budget)

    sp = sub.add_parser("scenarios", help="list the scenario presets")
    sp.set_defaults(func=_cmd_scenarios)

    sp = sub.add_parser("sweep", help="Monte Carlo sweep over a grid of scenario values")
    sp.add_argument("scenario", nargs="?", default=DEFAULT_SCENARIO)
    sp.add_argument("--grid", action="append", default=[], metavar="KEY=V1,V2,...")
    sp.add_argument("--seeds", type=int, default=20, help="replications per grid point")
    sp.add_argument("--seed", type=int, default=0, help="root seed")
    sp.add_argument("--images", type=Path, help="folder of source images")
    sp.add_argument("--workers", type=int, default=2)
    sp.add_argument("--scheduler", help="Dask scheduler address, e.g. tcp://host:8786")
    sp.add_argument(
        "--payload",
        action="append",
        default=[],
        help="also send a classical file: avif, jxl or jpeg (repeatable)",
    )
    sp.add_argument(
        "--budget-packets",
        type=int,
        default=None,
        help="packets for classical payloads (default: as many as the RVQ code)",
    )
    sp.add_argument("--out", required=True, type=Path)
    _add_effort(sp)
    add_common(sp)
    sp.set_defaults(func=_cmd_sweep)

    codec_p = sub.add_parser("codec", help="train or evaluate the codec")
    codec_sub = codec_p.add_subparsers(dest="codec_command", metavar="ACTION", required=True)
    # Listed for --help only: main() hands `codec train ...` to codec.train's own parser.
    sp = codec_sub.add_parser("train", help="train the codec (options: satlink codec train -h)")
    sp.set_defaults(func=_cmd_codec_train)
    sp = codec_sub.add_parser("eval", help="rate-distortion against AVIF, JPEG XL and JPEG")
    sp.add_argument("--data", required=True, type=Path)
    sp.add_argument("--out", required=True, type=Path, help="results JSON (CompressAI schema)")
    sp.add_argument("--codecs", default="rvq,avif,jxl,jpeg")
    sp.add_argument("--model", default="progic-rvq-s")
    sp.add_argument("--packet-size", type=int, default=DEFAULT_PACKET_SIZE_BYTES)
    sp.add_argument("--per-image", action="store_true")
    sp.add_argument("--plot", type=Path, help="RD plot PNG path")
    sp.add_argument("--limit", type=int, default=0, help="use only the first N images")
    sp.add_argument("--workers", type=int, default=2, help="processes for the classical search")
    sp.add_argument("--quiet", action="store_true")
    _add_effort(sp)
    sp.set_defaults(func=_cmd_codec_eval)
    return p


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser()
    train_args = _split_codec_train(argv)
    if train_args is not None:
        argv = [a for a in argv if a == "--debug"] + ["codec", "train"]
    args = parser.parse_args(argv)
    if train_args is not None:
        args.train_args = train_args
    if not getattr(args, "func", None):  # bare `satlink` runs the main job on the defaults
        args = parser.parse_args([*argv, "replay"])
    try:
        return args.func(args)
    except KeyboardInterrupt:
        print("satlink: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except (ValueError, OSError, LookupError) as exc:
        if args.debug:
            raise
        print(f"satlink: error: {exc}", file=sys.stderr)
        return EXIT_USER_ERROR


if __name__ == "__main__":
    sys.exit(main())
