"""The ``satlink`` command: a thin argparse layer over the Python API.

Every subcommand parses its arguments, calls one API function and prints what it returns.
Errors a user can fix end the run with one line and a non-zero exit; ``--debug`` shows the
traceback.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from satlink.cliargs import (
    EXIT_INTERRUPTED,
    EXIT_USER_ERROR,
    OneLineParser,
    existing_path,
    int_at_least,
    is_user_error,
    one_line,
    scheduler_address,
)
from satlink.config import DEFAULT_PACKET_SIZE_BYTES


def _cmd_replay(args: argparse.Namespace) -> int:
    from satlink.replay import replay

    codec = None
    if args.model is not None:
        from codec import load_codec

        codec = load_codec(args.model)
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
        beam_width=args.beam_width,
        payload=args.payload,
        budget_packets=args.budget_packets,
        codec=codec,
        **({} if args.max_previews is None else {"max_previews": args.max_previews or None}),
    )
    print(result.summary_table())
    print(f"wrote {args.out}/")
    return EXIT_INTERRUPTED if result.interrupted else 0


def _cmd_encode(args: argparse.Namespace) -> int:
    from codec import default_codec, load_codec
    from satlink.outdir import OutputFolder, write_files
    from satlink.packets import (
        PACKET_FILE_PATTERN,
        content_message_id,
        packetize,
        packets_for_stages,
    )

    OutputFolder(args.out, kind="encode").check()  # refused before any encoding work
    model = default_codec() if args.model is None else load_codec(args.model)
    code = model.encode(args.image, effort=args.effort, beam_width=args.beam_width)
    packets = packetize(
        code,
        args.packet_size,
        message_id=content_message_id(code) if args.message_id is None else args.message_id,
        order=args.order or "stage-major",
        interleave=bool(args.interleave),
    )
    names = [PACKET_FILE_PATTERN.format(seq=seq) for seq in range(len(packets))]
    paths = write_files(args.out, dict(zip(names, packets, strict=True)), kind="encode")
    size = paths[0].stat().st_size if paths else 0
    print(
        f"wrote {len(paths)} packets of {size} bytes to {args.out}/ "
        f"({paths[0].name} .. {paths[-1].name})"
    )
    if (args.order or "stage-major") == "stage-major":  # where a receiver's previews step up
        after = [
            packets_for_stages(code, k, packet_size_bytes=args.packet_size)
            for k in range(1, code.num_stages + 1)
        ]
        print(f"stages 1-{code.num_stages} complete after packets {', '.join(map(str, after))}")
    return 0


def _cmd_decode(args: argparse.Namespace) -> int:
    from satlink.receiver import decode_files

    reports = decode_files(args.dir, args.out, split=args.split)
    for report in reports if isinstance(reports, list) else [reports]:
        print(report.describe())
        if args.reference is not None and report.out_path is not None:
            print(_score_line(args.reference, report.out_path))
    return 0


def _score_line(reference: Path, preview: Path) -> str:
    """PSNR and MS-SSIM of a written preview against the reference picture."""
    from codec import load_image
    from codec.metrics import ms_ssim, psnr

    ref, img = load_image(reference), load_image(preview)
    if ref.shape != img.shape:
        raise ValueError(
            f"--reference {reference} is {ref.shape[1]}×{ref.shape[0]} px but the decoded "
            f"picture is {img.shape[1]}×{img.shape[0]} px; give the picture that was encoded"
        )
    return f"against {reference}: PSNR {psnr(ref, img):.2f} dB, MS-SSIM {ms_ssim(ref, img):.4f}"


def _cmd_dissector(args: argparse.Namespace) -> int:
    from satlink.report import dissector_path

    print(dissector_path())
    return 0


def _cmd_passes(args: argparse.Namespace) -> int:
    from satlink.scenario import load_scenario

    scenario = load_scenario(args.scenario, overrides=args.set)
    passes = scenario.passes(days=args.days)
    if args.json:
        print(json.dumps([p.to_dict() for p in passes], indent=2))
        return 0
    print(f"{'aos_utc':<27}  {'los_utc':<27}  {'max_elevation_deg':>17}  {'duration_s':>10}")
    for p in passes:
        d = p.to_dict()
        print(
            f"{d['aos_utc']:<27}  {d['los_utc']:<27}  {p.max_elevation_deg:>17.1f}  "
            f"{p.duration_s:>10.1f}"
        )
    print(f"{len(passes)} passes")
    return 0


def _cmd_compare(args: argparse.Namespace) -> int:
    from satlink.compare import compare

    def floats(text: str) -> list[float]:
        return [float(v) for v in text.split(",") if v.strip()]

    result = compare(
        args.scenario,
        args.image,
        losses=floats(args.losses),
        loss_models=[m.strip() for m in args.models.split(",") if m.strip()],
        seeds=args.seeds,
        ratios=floats(args.ratios),
        arms=[a.strip() for a in args.arms.split(",") if a.strip()],
        root_seed=args.seed,
        overrides=args.set,
        out_dir=args.out,
        progress=not args.quiet,
        side_px=args.side_px,
    )
    for r in result.summary:
        print(
            f"{r['loss_model']:>15} {100 * r['loss']:5.1f}% {r['arm']:>9}: "
            f"MS-SSIM {r['final_ms_ssim_median']:.3f} "
            f"[{r['final_ms_ssim_p10']:.3f}, {r['final_ms_ssim_p90']:.3f}]  "
            f"P(picture) {r['p_stage1_complete_median']:.2f}"
        )
    print(f"wrote {args.out}/compare.csv, compare.png")
    return 0


def _cmd_budget(args: argparse.Namespace) -> int:
    from satlink.linkbudget import format_budget_table
    from satlink.scenario import load_scenario

    scenario = load_scenario(args.scenario, overrides=args.set)
    budget = scenario.link_budget()
    if args.json:
        # one shape for every scenario: a pass gives many steps, a fixed geometry one
        steps = budget if isinstance(budget, list) else [budget]
        doc = {"scenario": scenario.name, "overrides": list(scenario.overrides)}
        doc |= {"over_pass": isinstance(budget, list), "steps": steps}
        print(json.dumps(doc, indent=2))
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
    from codec.train.cli import main as train_main

    train_main(args.train_args, prog="satlink codec train")
    return 0


def _split_codec_train(argv: list[str]) -> list[str] | None:
    """Arguments after `codec train`, or None. They go to codec.train's parser untouched."""
    rest = [a for a in argv if a != "--debug"]
    return rest[2:] if rest[:2] == ["codec", "train"] else None


def _cmd_codec_models(args: argparse.Namespace) -> int:
    from codec.zoo import DEFAULT_MODEL, MODELS, RETIRED, load_codec, weights_path

    for model_id in sorted(MODELS | RETIRED):
        if model_id in RETIRED:
            name, commit = RETIRED[model_id]
            print(f"{model_id:>3}  {name:<16} retired: in git at {commit}")
            continue
        name = MODELS[model_id]
        model, path = load_codec(model_id), weights_path(model_id)
        mark = "  (default)" if name == DEFAULT_MODEL else ""
        print(
            f"{model_id:>3}  {name:<16} {model.net.num_parameters() / 1e6:.2f} M parameters, "
            f"{path.stat().st_size / 1e6:.1f} MB{mark}"
        )
    return 0


def _cmd_codec_eval(args: argparse.Namespace) -> int:
    from codec.eval import run_eval
    from codec.zoo import default_codec, load_codec
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

    model = default_codec() if args.model is None else load_codec(args.model)
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
        workers=min(args.workers, os.cpu_count() or 1),  # more processes than cores: only memory
        budget_label=f"whole {args.packet_size}-byte packets, headers included",
        effort=args.effort,
        beam_width=args.beam_width,
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
        beam_width=args.beam_width,
        model=args.model,
    )
    print(result.summary_table())
    print(f"wrote {args.out}/")
    return 0


def _add_scenario(sp: argparse.ArgumentParser) -> None:
    from satlink.scenario import DEFAULT_SCENARIO

    sp.add_argument(
        "scenario",
        nargs="?",
        default=DEFAULT_SCENARIO,
        help=f"preset name or TOML path (default {DEFAULT_SCENARIO})",
    )


def _add_effort(sp: argparse.ArgumentParser) -> None:
    """``--model``, ``--effort`` and ``--beam-width``: how the picture is encoded, the same on every
    command."""
    sp.add_argument(
        "--model",
        default=None,
        type=lambda text: int(text) if text.isdigit() else text,
        metavar="NAME|ID|FILE",
        help="codec model: a shipped name, a model id or a .pt weight file (default: the "
        "newest shipped model; `satlink codec models` lists them)",
    )
    sp.add_argument(
        "--effort",
        type=int,
        default=0,
        metavar="N",
        help="encoder refinement for the RVQ code (0..100, default 0): N steps per stage, each "
        "stage's indices chosen for its own preview, and N more for the last two stages' codes; "
        "better indices for the same decoder, about 7 decoder passes of time per unit of effort",
    )
    sp.add_argument(
        "--beam-width",
        type=int,
        default=1,
        metavar="W",
        help="encoder beam search for the RVQ code (1..64, default 1: the nearest code stage by "
        "stage): W paths through the stages, each stage's codes chosen with the later stages in "
        "view; 8 lifts stages 2-5 for about 0.1 s more at 768×512. Effort 0 only",
    )


def _add_ordering(sp: argparse.ArgumentParser, default: str) -> None:
    """The packet ordering flags, the same for ``encode`` and ``replay``."""
    from satlink.packets import ORDERS

    sp.add_argument(
        "--order",
        choices=ORDERS,
        default=None,
        help=f"packet order: {' or '.join(ORDERS)} (default: {default})",
    )
    sp.add_argument(
        "--interleave",
        action=argparse.BooleanOptionalAction,
        default=None,
        help=f"spread each packet's indices across the image (default: {default})",
    )


def build_parser() -> argparse.ArgumentParser:
    import satlink

    p = OneLineParser(
        prog="satlink",
        description="Replay picture transfers over satellite short-message links. "
        "The main job: satlink replay [SCENARIO] --out DIR.",
    )
    p.add_argument("--version", action="version", version=f"satlink {satlink.__version__}")
    p.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    def add_common(sp: argparse.ArgumentParser, quiet: bool = True) -> None:
        sp.add_argument(
            "--set",
            action="append",
            default=[],
            metavar="KEY=VALUE",
            help="override a scenario key, e.g. channel.loss.p=0.1 (repeatable)",
        )
        if quiet:
            sp.add_argument("--quiet", action="store_true", help="no progress bar")

    sp = sub.add_parser("replay", help="replay one scenario on one image (the main job)")
    _add_scenario(sp)
    sp.add_argument(
        "--image", type=existing_path, help="source image (default: a scikit-image sample)"
    )
    sp.add_argument(
        "--seed",
        type=int_at_least(0),
        default=0,
        help="seed of the link's randomness (loss, bit errors, jitter); default 0",
    )
    sp.add_argument(
        "--out",
        default="replay-out",
        type=Path,
        help="output folder (default replay-out): summary.json, packets.csv, packets.pcap, "
        "report.html, previews/, figures",
    )
    _add_ordering(sp, "the scenario's")
    from satlink.replay import PAYLOADS

    sp.add_argument(
        "--payload",
        choices=PAYLOADS,
        default="rvq",
        help="what to send: the progressive RVQ code (default) or the best classical file "
        "that fits the same packets, as a sweep's --payload does",
    )
    sp.add_argument(
        "--budget-packets",
        type=int_at_least(1),
        default=None,
        metavar="N",
        help="packets for a classical payload (default: as many as the RVQ code)",
    )
    sp.add_argument(
        "--lpips-weights", type=existing_path, help="local LPIPS weight file (optional)"
    )
    sp.add_argument(
        "--dists-weights", type=existing_path, help="local DISTS weight file (optional)"
    )
    sp.add_argument(
        "--max-previews",
        type=int_at_least(0),
        default=None,
        metavar="N",
        help="refuse a plan with more previews (one per packet) than N, before sending "
        "(default 1000; 0: no limit)",
    )
    _add_effort(sp)
    add_common(sp)
    sp.set_defaults(func=_cmd_replay)

    sp = sub.add_parser("encode", help="encode an image into packet files")
    sp.add_argument("image", help="picture to encode (PNG, JPEG, ...)")
    sp.add_argument(
        "--out", required=True, type=Path, help="folder for packet_NNNNN.bin, one per packet"
    )
    sp.add_argument(
        "--packet-size",
        type=int,
        default=DEFAULT_PACKET_SIZE_BYTES,
        help=f"bytes per packet (default {DEFAULT_PACKET_SIZE_BYTES})",
    )
    _add_ordering(sp, "stage-major, not interleaved")
    sp.add_argument(
        "--message-id",
        type=int,
        default=None,
        help="16-bit message id (default: derived from the picture, so two never share one)",
    )
    _add_effort(sp)
    sp.set_defaults(func=_cmd_encode)

    sp = sub.add_parser("decode", help="decode whatever packet files are present")
    sp.add_argument("dir", type=Path, help="folder of packet files (as satlink encode writes)")
    sp.add_argument("--out", required=True, type=Path, help="preview PNG path")
    sp.add_argument(
        "--reference",
        type=existing_path,
        metavar="IMAGE",
        help="the original picture: print PSNR and MS-SSIM of the decoded preview against it",
    )
    sp.add_argument(
        "--split",
        action="store_true",
        help="a folder mixing pictures: write one PNG per picture (<out>-msg<id>.png)",
    )
    sp.set_defaults(func=_cmd_decode)

    from satlink.compare import ARMS, DEFAULT_RATIOS, LOSS_MODELS

    sp = sub.add_parser(
        "compare", help="RVQ and AVIF, plain / with FEC / with ARQ, against loss at equal bytes"
    )
    _add_scenario(sp)
    sp.add_argument("--image", help="source image (default: the built-in astronaut)")
    sp.add_argument("--side-px", type=int, default=None, help="resize to a square of this side")
    sp.add_argument("--losses", default="0,0.05,0.1,0.2,0.3", help="long-run message loss")
    sp.add_argument("--models", default=",".join(LOSS_MODELS), help="loss models")
    sp.add_argument("--seeds", type=int, default=20, help="replications per point and arm")
    sp.add_argument("--seed", type=int, default=0, help="root seed")
    sp.add_argument(
        "--ratios",
        default=",".join(f"{r:g}" for r in DEFAULT_RATIOS),
        help="repair ratio per RVQ stage for the rvq-uep arm",
    )
    sp.add_argument("--arms", default=",".join(ARMS), help="arms to run, comma-separated")
    sp.add_argument(
        "--out", required=True, type=Path, help="output folder (compare.csv, compare.png)"
    )
    add_common(sp)
    sp.set_defaults(func=_cmd_compare)

    sp = sub.add_parser("budget", help="link budget of a scenario")
    _add_scenario(sp)
    sp.add_argument(
        "--json",
        action="store_true",
        help="JSON, the same shape for every scenario: scenario, overrides, over_pass and "
        "steps (one per time step of a pass, else one), each with every input and term",
    )
    add_common(sp, quiet=False)
    sp.set_defaults(func=_cmd_budget)

    sp = sub.add_parser(
        "dissector", help="print the path of the Wireshark Lua dissector for packets.pcap"
    )
    sp.set_defaults(func=_cmd_dissector)

    sp = sub.add_parser("passes", help="passes of a scenario's orbit (TLE) over its station")
    sp.add_argument("scenario", help="preset name or TOML path with [orbit] and [ground_station]")
    sp.add_argument(
        "--days", type=float, default=None, help="days from orbit.start_utc (default: the orbit's)"
    )
    sp.add_argument(
        "--json", action="store_true", help="a JSON list: aos_utc, los_utc, max_elevation_deg, ..."
    )
    sp.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a scenario key, e.g. ground_station.min_elevation_deg=20 (repeatable)",
    )
    sp.set_defaults(func=_cmd_passes)

    sp = sub.add_parser("scenarios", help="list the scenario presets")
    sp.set_defaults(func=_cmd_scenarios)

    sp = sub.add_parser("sweep", help="Monte Carlo sweep over a grid of scenario values")
    _add_scenario(sp)
    sp.add_argument(
        "--grid",
        action="append",
        default=[],
        metavar="KEY=V1,V2,...",
        help="a scenario key and its values; several --grid make a product (repeatable)",
    )
    sp.add_argument("--seeds", type=int_at_least(1), default=20, help="replications per grid point")
    sp.add_argument("--seed", type=int_at_least(0), default=0, help="root seed")
    sp.add_argument("--images", type=existing_path, help="folder of source images")
    sp.add_argument(
        "--workers",
        type=int_at_least(0),
        default=2,
        help="local processes (at most the CPU cores; 0: in this process)",
    )
    sp.add_argument(
        "--scheduler", type=scheduler_address, help="Dask scheduler address, e.g. tcp://host:8786"
    )
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
    sp.add_argument(
        "--out",
        required=True,
        type=Path,
        help="output folder: results.csv, replications.csv, summary.csv, plots, report.html",
    )
    _add_effort(sp)
    add_common(sp)
    sp.set_defaults(func=_cmd_sweep)

    codec_p = sub.add_parser("codec", help="train or evaluate the codec")
    codec_sub = codec_p.add_subparsers(dest="codec_command", metavar="ACTION", required=True)
    # Listed for --help only: main() hands `codec train ...` to codec.train's own parser.
    sp = codec_sub.add_parser("train", help="train the codec (options: satlink codec train -h)")
    sp.set_defaults(func=_cmd_codec_train)
    sp = codec_sub.add_parser("models", help="the shipped models: id, name, size, default")
    sp.set_defaults(func=_cmd_codec_models)
    sp = codec_sub.add_parser("eval", help="rate-distortion against AVIF, JPEG XL and JPEG")
    sp.add_argument(
        "--data", required=True, type=existing_path, help="folder of test images (e.g. Kodak)"
    )
    sp.add_argument("--out", required=True, type=Path, help="results JSON (CompressAI schema)")
    sp.add_argument(
        "--codecs",
        default="rvq,avif,jxl,jpeg",
        help="comma-separated codecs to compare (default rvq,avif,jxl,jpeg)",
    )
    sp.add_argument(
        "--packet-size",
        type=int,
        default=DEFAULT_PACKET_SIZE_BYTES,
        help=f"bytes per packet for the byte counts (default {DEFAULT_PACKET_SIZE_BYTES})",
    )
    sp.add_argument("--per-image", action="store_true", help="also write per-image results")
    sp.add_argument("--plot", type=Path, help="RD plot PNG path")
    sp.add_argument("--limit", type=int_at_least(0), default=0, help="use only the first N images")
    sp.add_argument(
        "--workers",
        type=int_at_least(1),
        default=2,
        help="processes for the classical search (at most the CPU cores)",
    )
    sp.add_argument("--quiet", action="store_true", help="no progress bar")
    _add_effort(sp)
    sp.set_defaults(func=_cmd_codec_eval)
    return p


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser()
    train_args = _split_codec_train(argv)
    if train_args is not None:
        argv = [a for a in argv if a == "--debug"] + ["codec", "train"]
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help (0), or a usage error already printed as one line (2)
        return exc.code if isinstance(exc.code, int) else EXIT_USER_ERROR
    if train_args is not None:
        args.train_args = train_args
    if not getattr(args, "func", None):  # bare `satlink`: help, nothing written
        parser.print_help()
        return 0
    try:
        return args.func(args)
    except KeyboardInterrupt:
        print("satlink: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as exc:
        if args.debug or not is_user_error(exc):
            raise
        print(f"satlink: error: {one_line(exc)}", file=sys.stderr)
        return EXIT_USER_ERROR


if __name__ == "__main__":
    sys.exit(main())
