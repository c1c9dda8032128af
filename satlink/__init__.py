"""satlink: replay picture transfers over satellite short-message links.

>>> import satlink
>>> satlink.__version__
'0.1.0'
>>> sorted(set(satlink.__all__) - set(dir(satlink)))   # every public name resolves
[]

The public Python API, importable from the package itself (``satlink.replay(...)``):

- one transfer: :func:`replay` (and its steps :func:`encode_payload`, :func:`transmit`,
  :func:`summarise`), :class:`ReplayResult`;
- many: :func:`sweep`, :class:`SweepResult`, :func:`parse_grid`, :func:`replication_seeds`;
- scenarios: :func:`load_scenario`, :func:`list_presets`, :class:`Scenario`;
- packets: :func:`packetize`, :func:`parse_packet`, :class:`Reassembler`;
- the ground end: :class:`Receiver`, :class:`DecodeCache`.

Names load on first use (a module-level ``__getattr__``), so ``import satlink`` stays quick;
the codec, and with it torch, loads only when something decodes. ``satlink.replay`` and
``satlink.sweep`` are modules (``satlink.replay.TransmitPlan``) that can be called like their
main function: ``satlink.replay("bds3-rsmc-geo", seed=1)`` is
``satlink.replay.replay("bds3-rsmc-geo", seed=1)``.
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Any

__version__ = "0.1.0"

# public name -> module that defines it ("replay" and "sweep" are callable modules)
_EXPORTS: dict[str, str] = {
    "replay": "satlink.replay",
    "ReplayResult": "satlink.result",
    "encode_payload": "satlink.replay",
    "transmit": "satlink.replay",
    "summarise": "satlink.replay",
    "sweep": "satlink.sweep",
    "SweepResult": "satlink.sweep",
    "SweepError": "satlink.sweep",
    "parse_grid": "satlink.sweep",
    "replication_seeds": "satlink.sweep",
    "load_scenario": "satlink.scenario",
    "list_presets": "satlink.scenario",
    "Scenario": "satlink.scenario",
    "ScenarioError": "satlink.scenario",
    "packetize": "satlink.packets",
    "parse_packet": "satlink.packets",
    "Reassembler": "satlink.packets",
    "Receiver": "satlink.receiver",
    "DecodeCache": "satlink.receiver",
}

__all__ = ["__version__", *_EXPORTS]


class CallableModule(ModuleType):
    """A module that, called, runs its namesake function.

    ``replay`` and ``sweep`` name both a module and its main function. Python binds the package
    attribute to the module whenever the module is imported, so the attribute cannot be the
    function; a callable module serves both uses (``satlink.replay(...)`` and
    ``satlink.replay.TransmitPlan``).
    """

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return getattr(self, self.__name__.rpartition(".")[2])(*args, **kwargs)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'satlink' has no attribute {name!r}")
    mod = importlib.import_module(module)
    value = mod if mod.__name__ == f"satlink.{name}" else getattr(mod, name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_EXPORTS})
