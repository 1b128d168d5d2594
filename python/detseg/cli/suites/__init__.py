"""Benchmark suites of the op families: each module registers its workloads
(``detseg.cli.workloads.register``), its detseg ops (``providers.detseg_op``) and its peers
(``providers.impl``). Every module of this package is imported once, with the providers."""

from __future__ import annotations

import importlib
import pkgutil

for _mod in sorted(m.name for m in pkgutil.iter_modules(__path__)):
    importlib.import_module(f"{__name__}.{_mod}")
