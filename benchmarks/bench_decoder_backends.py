"""The decoder (synthesis transform) on different CPU back ends, against eager PyTorch.

    MKL_ENABLE_INSTRUCTIONS=AVX2 ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2 \
    FBGEMM_ENABLE_INSTRUCTIONS=AVX2 \
        python benchmarks/bench_decoder_backends.py [--repeats 9] [--threads 2]

Times one 768×512 synthesis pass of the shipped model (median of ``--repeats`` after warm-up) for:

- ``eager``: what ``Codec.decode`` runs (channels_last, in-place activations);
- ``compile``: ``torch.compile`` (inductor), plus its one-off compile time;
- ``int8``: dynamic int8 quantization of the decoder's pointwise layers (1×1 convolutions
  recast as ``nn.Linear`` on channels-last views, fbgemm); also its MS-SSIM change on a
  synthetic picture;
- ``onnxruntime``: the synthesis exported to ONNX (opset 17) on ONNX Runtime's CPU provider
  (optional: skipped when ``onnxruntime`` is not installed). ONNX Runtime picks its own kernels
  from the CPU it finds; no setting caps it to AVX2, so on an AVX-512 host its figure is not the
  AVX2 figure;
- ``openvino``: the synthesis converted with ``openvino.convert_model`` and compiled for the CPU
  plugin in fp32 (optional: skipped when ``openvino`` is not installed). Its oneDNN does honour
  ``ONEDNN_MAX_CPU_ISA``, so this one is an AVX2 figure.

The optional back ends install with ``pip install -e ".[backends]"``.

The three environment variables above make torch, oneDNN and fbgemm use AVX2 kernels on a host
that has AVX-512, as the speed bars are judged on an AVX2-only machine.
"""

from __future__ import annotations

import argparse
import copy
import os
import tempfile
import time
import warnings

import numpy as np
import torch
from benchtools import median_ms
from torch import nn

from codec import default_codec


class Pointwise(nn.Module):
    """A 1×1 convolution as a Linear over the channel axis of a channels-last tensor."""

    def __init__(self, conv: nn.Conv2d) -> None:
        super().__init__()
        self.lin = nn.Linear(conv.in_channels, conv.out_channels)
        self.lin.weight.data = conv.weight.data[:, :, 0, 0].clone()
        self.lin.bias.data = conv.bias.data.clone()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.lin(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


class Synthesis(nn.Module):
    """The synthesis transform as a module of (latent, mask), for exporters."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, lat: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.inner.synthesis(lat, mask)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeats", type=int, default=9)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore")
    codec = default_codec()
    net = codec.net
    y, x = np.mgrid[0:512, 0:768]
    img = np.stack([x % 256, y % 256, (x + y) % 256], -1).astype(np.uint8)
    code = codec.encode(img)
    idx = torch.from_numpy(code.indices.astype(np.int64))[None]
    rec = torch.ones_like(idx, dtype=torch.bool)
    with torch.inference_mode():
        latent = net.assemble_latent(net.rvq.lookup(idx), rec)
    latent = latent.clone()
    rows = []
    with torch.no_grad():
        base = median_ms(lambda: net.synthesis(latent, rec), args.repeats)
        rows.append(("eager (shipped path)", base, ""))

        t0 = time.perf_counter()
        compiled = torch.compile(net.synthesis, dynamic=False)
        compiled(latent, rec)
        compile_s = time.perf_counter() - t0
        ms = median_ms(lambda: compiled(latent, rec), args.repeats)
        rows.append(("torch.compile (inductor)", ms, f"compile {compile_s:.1f} s per shape"))

        qnet = copy.deepcopy(net)
        for level in qnet.dec_levels:
            for block in level:
                block.pw1, block.pw2 = Pointwise(block.pw1), Pointwise(block.pw2)
        qnet = torch.ao.quantization.quantize_dynamic(qnet, {nn.Linear}, dtype=torch.qint8)
        ms = median_ms(lambda: qnet.synthesis(latent, rec), args.repeats)
        a, b = net.synthesis(latent, rec), qnet.synthesis(latent, rec)
        rows.append(
            ("int8 dynamic (pointwise)", ms, f"max abs change {float((a - b).abs().max()):.3f}")
        )

        try:
            import onnxruntime as ort
        except ImportError:
            rows.append(("onnxruntime", float("nan"), "not installed"))
        else:
            with tempfile.TemporaryDirectory() as tmp:
                path = os.path.join(tmp, "synthesis.onnx")
                torch.onnx.export(
                    Synthesis(net).eval(),
                    (latent, rec.float()),
                    path,
                    input_names=["latent", "mask"],
                    opset_version=17,
                    dynamo=False,
                )
                so = ort.SessionOptions()
                so.intra_op_num_threads, so.inter_op_num_threads = args.threads, 1
                sess = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
                feeds = {"latent": latent.numpy(), "mask": rec.float().numpy()}
                ms = median_ms(lambda: sess.run(None, feeds), args.repeats)
                rows.append((f"onnxruntime {ort.__version__} (own ISA choice)", ms, ""))

        try:
            import openvino as ov
        except ImportError:
            rows.append(("openvino", float("nan"), "not installed"))
        else:
            model = ov.convert_model(Synthesis(net).eval(), example_input=(latent, rec.float()))
            compiled_ov = ov.Core().compile_model(
                model,
                "CPU",
                {"INFERENCE_NUM_THREADS": args.threads, "INFERENCE_PRECISION_HINT": "f32"},
            )
            req = compiled_ov.create_infer_request()
            feeds = [latent.numpy(), rec.float().numpy()]
            ms = median_ms(lambda: req.infer(feeds), args.repeats)
            out = torch.from_numpy(req.infer(feeds)[0].copy())
            diff = float((out - net.synthesis(latent, rec)).abs().max())
            rows.append((f"openvino {ov.__version__} (fp32)", ms, f"max abs change {diff:.1e}"))

    isa = (
        ", ".join(
            f"{k}={os.environ[k]}"
            for k in (
                "MKL_ENABLE_INSTRUCTIONS",
                "ATEN_CPU_CAPABILITY",
                "ONEDNN_MAX_CPU_ISA",
                "FBGEMM_ENABLE_INSTRUCTIONS",
            )
            if k in os.environ
        )
        or "native ISA"
    )
    print(f"synthesis 768×512, {args.threads} threads, median of {args.repeats}; {isa}\n")
    print("| back end | median ms | ratio to eager | note |\n|---|---:|---:|---|")
    for name, ms, note in rows:
        print(f"| {name} | {ms:.1f} | {ms / base:.2f} | {note} |")


if __name__ == "__main__":
    main()
