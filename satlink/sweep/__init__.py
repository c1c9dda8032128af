"""Monte Carlo sweeps: many replays over a grid of scenario values, locally or on Dask.

>>> from satlink.sweep import sweep
>>> result = sweep("geo-burst-arq", grid=["channel.loss.p=0.02,0.05,0.1"], seeds=200,
...                payloads=("rvq", "avif"), out_dir="sweep-out")        # doctest: +SKIP
>>> print(result.summary_table())                                        # doctest: +SKIP

**Replications.** The grid is the product of the given keys' values (any scenario key, as in
``--set``), times ``seeds`` replicates, times the images, times the payloads. One replication is
one replay: the payload's packets through the grid point's link, a preview and its scores after
every new packet. It runs the replay's own steps (:func:`satlink.replay.encode_payload`,
:func:`~satlink.replay.transmit`, :func:`~satlink.replay.summarise`), so the figures mean the same
here and a replication scores exactly as the replay of its seed.

**Seeds.** Replicate ``r`` gets its link seed from one root seed:
``SeedSequence(root_seed).spawn(seeds)[r]``, reduced to a 63-bit integer
(:func:`replication_seeds`). The same replicate uses the same seed at every grid point, image and
payload (common random numbers: differences between rows come from the parameters, not from the
luck of the draw), and ``satlink replay --seed N --set KEY=VALUE`` replays any RVQ replication
exactly. Results do not depend on where or in what order replications ran: each one is a pure
function of its parameters, every worker runs torch on one thread, and the tables are assembled
in a fixed order.

**Payloads.** ``"rvq"`` is the progressive code; ``"avif"``, ``"jxl"``, ``"jpeg"`` send the best
file of that codec (``codec.classical.fit_classical``, selected by MS-SSIM) that fits
``budget_packets`` packets, by default as many as the RVQ code of that image takes at that grid
point. The receiver shows nothing until the file is whole. When no file fits, the replication
sends nothing and never shows a picture (``fits`` is false in ``replications.csv``).

**Never reached / no picture.** A time the replication never reached (no picture, or MS-SSIM
stayed below the target) counts as +infinity: it ranks after every finite time, so a median or
percentile is ``inf`` (``never`` in :meth:`SweepResult.summary_table`) when at least that share of
replications never got there; ``*_reached_frac`` says how many did. While no picture has arrived
(and as final quality, if none ever does) a replication scores as a mid-grey image, as the codec
evaluation scores a miss; ``no_picture_frac`` counts those replications.

**Outputs** (``out_dir``):

- ``results.csv``: tidy, one row per replication and link event (a transmission, drop or wait):
  grid values, ``payload``, ``image``, ``replicate``, ``seed``, ``event``, ``wire_seq`` (message
  on the wire; fragments count), ``packet_seq``, ``attempt``, ``messages_sent`` (transmissions so
  far, this one included), ``t_tx_start_s``, ``t_arrival_s``, ``outcome``, ``rx_verdict``,
  ``preview`` and the preview's ``psnr_db`` and ``ms_ssim``;
- ``replications.csv``: one row per replication with its headline figures;
- ``summary.csv``: per grid point and payload, median, p10 and p90 (order statistics: each is a
  value some replication produced, see :func:`~satlink.sweep.results.quantile`) of the
  time to first preview, to MS-SSIM 0.8 and 0.9 and to full quality, and of the final MS-SSIM and
  PSNR;
- ``quality_vs_packets.png`` and ``quality_vs_time.png``: median line per grid point and payload
  with every run (at most 10 per line) or the 10–90% band, n in the legend;
- ``report.html``: one self-contained page with the summary table and the plots;
- ``sweep.json``: the sweep's parameters and run statistics (decode-cache hits, rate);
- ``replications/<key>.json``: one file per finished replication, named by a hash of everything
  that decides its result and written atomically. Running the same sweep again (or a larger
  one: more seeds, more grid values) reuses them, so an interrupted sweep resumes where it
  stopped.

**Speed.** A first phase, spread over the workers, encodes each image once per payload and
packet layout (for classical payloads: fits the file to the budget once). Then each worker keeps
a bounded :class:`~satlink.receiver.DecodeCache` per image (scores only, no pixels): replications
of one image see the same received masks again and again, so each distinct mask is decoded and
scored once per worker. ``SweepResult.stats`` reports the hits and misses. On Dask the images
and prepared payloads are broadcast to every worker and the model loaded in each, once.

**Modules.** :mod:`~satlink.sweep.grid` (grid parsing and expansion, seeds, images),
:mod:`~satlink.sweep.worker` (worker caches, payload preparation, one replication),
:mod:`~satlink.sweep.runners` (inline, process pool, Dask), :mod:`~satlink.sweep.results`
(:class:`SweepResult`: tables and plots), :mod:`~satlink.sweep.store` (resume files) and
:mod:`~satlink.sweep.core` (:func:`sweep`).
"""

from __future__ import annotations

import sys

import satlink
from satlink.replay import PAYLOADS
from satlink.sweep.core import sweep
from satlink.sweep.grid import Replication, SweepError, expand_grid, parse_grid, replication_seeds
from satlink.sweep.results import QUANTILES, SCORE_FIGURES, TIME_FIGURES, SweepResult, quantile

__all__ = [
    "PAYLOADS",
    "QUANTILES",
    "SCORE_FIGURES",
    "TIME_FIGURES",
    "Replication",
    "SweepError",
    "SweepResult",
    "expand_grid",
    "parse_grid",
    "quantile",
    "replication_seeds",
    "sweep",
]

# `satlink.sweep(...)` runs sweep(): the package exports the function under this package's name.
sys.modules[__name__].__class__ = satlink.CallableModule
