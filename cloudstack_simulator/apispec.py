"""The commands the simulator serves, as ``listApis`` describes them (CloudStack 4.18).

``apispec.json`` was generated from ``fixtures/cloudstack-apis-4.18.json`` keeping only the
parameters the simulator honours and the response fields it sends; descriptions are upstream's
(Apache-2.0). ``tests/simulator/test_sim_contract.py`` checks it stays a subset of
upstream, but for the few later additions it lists (listEvents ``archived``, 4.19). It is read
once, when this module is first imported.
"""

from __future__ import annotations

import json
from importlib.resources import files
from typing import Any, Final


def _load() -> dict[str, dict[str, Any]]:
    """Command name -> its ``listApis`` entry, from the packaged ``apispec.json``."""
    text = files("cloudstack_simulator").joinpath("apispec.json").read_text(encoding="utf-8")
    spec: dict[str, dict[str, Any]] = json.loads(text)
    return spec


APIS: Final = _load()
