"""``python -m codec.train``: the training command line (:mod:`codec.train.cli`)."""

import sys

from codec.train.cli import cli

sys.exit(cli())
