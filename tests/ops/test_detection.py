"""The detection time: CloudStack's live ping (and Host HA) settings, else the sidecar's."""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path

import pytest
from wiringkit import context, ledger_url, served

from cloudstack_simulator import Simulator
from sidecar.cli.role import ROLE_APIS
from sidecar.cloudstack.config import CloudStackConfig
from sidecar.model.defaults import host_ha_detection, ping_detection
from sidecar.model.resources import Host, HostHA
from sidecar.ops.context import Context
from sidecar.ops.detection import failure_detection


def detection(sim: Simulator, tmp_path: Path, hosts: list[Host] | None = None,
              **settings: float) -> float:
    with served(sim) as endpoint:
        ctx = context(sim, endpoint, ledger_url(tmp_path), **settings)

        async def go() -> float:
            async with ctx.client() as cs:
                return await failure_detection(cs, ctx.settings, hosts or [])

        return asyncio.run(go())


def set_config(sim: Simulator, name: str, value: str) -> None:
    setting = sim.state.settings[name]
    sim.state.settings[name] = dataclasses.replace(setting, value=value)


def test_the_ping_path_gives_90_seconds_by_cloudstacks_defaults() -> None:
    assert ping_detection(60, 2.5) == 60  # 60 x floor(150 / 60) - 60: the ping clock's minute
    assert ping_detection(30, 3) == 30 and ping_detection(60, 4) == 180
    assert host_ha_detection(60, 10) == 540


def test_the_live_ping_settings_win_over_the_sidecars(tmp_path: Path) -> None:
    sim = Simulator(profile="4.19.2", seed=3, hosts=2, vms_per_host=1)
    set_config(sim, "ping.interval", "30")
    set_config(sim, "ping.timeout", "3")
    assert detection(sim, tmp_path, ping_interval=60, ping_timeout=2.5) == 30  # 60 x 1 - 30


def test_without_listconfigurations_the_settings_decide(tmp_path: Path) -> None:
    sim = Simulator(profile="4.19.2", seed=3, hosts=2, vms_per_host=1)
    set_config(sim, "ping.interval", "30")
    key, secret = sim.create_key(role=set(ROLE_APIS) - {"listConfigurations"})
    with served(sim) as endpoint:
        ctx = Context(settings=context(sim, endpoint, ledger_url(tmp_path), ping_interval=40,
                                       ping_timeout=4).settings,
                      cloudstack=CloudStackConfig(endpoint=endpoint, key=key, secret=secret))

        async def go() -> float:
            async with ctx.client() as cs:
                return await failure_detection(cs, ctx.settings, [])

        assert asyncio.run(go()) == 80  # 60 x 2 - 40 from the settings, not the live 30 s


@pytest.mark.parametrize(("attempts", "expected"), [("10", 60.0), ("2", 30.0)])
def test_host_ha_shortens_the_detection_only_when_a_host_has_it_and_it_is_faster(
    tmp_path: Path, attempts: str, expected: float
) -> None:
    sim = Simulator(profile="4.19.2", seed=3, hosts=2, vms_per_host=1)
    set_config(sim, "ping.interval", "60")
    sim.state.settings["kvm.ha.activity.check.max.attempts"] = dataclasses.replace(
        sim.state.settings["ping.interval"], name="kvm.ha.activity.check.max.attempts",
        value=attempts)
    sim.state.settings["kvm.ha.activity.check.interval"] = dataclasses.replace(
        sim.state.settings["ping.interval"], name="kvm.ha.activity.check.interval", value="30")
    ha = Host(id="h-1", name="kvm1", state="Up", hostha=HostHA(haenable=True))
    assert detection(sim, tmp_path, [ha]) == expected
    assert detection(sim, tmp_path, [dataclasses.replace(ha, hostha=HostHA())]) == 60.0
