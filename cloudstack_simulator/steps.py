"""What scenario steps share: the run they belong to, and the writes they make on the state."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from cloudstack_simulator.context import Context
from cloudstack_simulator.state import Event, Host, Vm
from cloudstack_simulator.truth import FailureTruth


@dataclass
class ScenarioRun:
    """A started scenario: its hosts, failures and whether every step has run."""

    id: int
    name: str
    hosts: list[str]
    started: float
    failures: list[FailureTruth] = field(default_factory=list)
    pending: int = 0
    options: dict[str, Any] = field(default_factory=dict)

    @property
    def done(self) -> bool:
        """True once every scheduled step ran."""
        return self.pending == 0

    @property
    def host(self) -> str:
        """The (first) host of the scenario."""
        return self.hosts[0] if self.hosts else ""

    def __str__(self) -> str:
        return ", ".join(self.hosts)


class Steps:
    """Schedules the steps of a run on the clock, and the state changes steps make."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    def at(self, run: ScenarioRun, when: float, fn: Callable[[], None], label: str) -> None:
        """Run ``fn`` at virtual time ``when``; the run is pending until it has."""
        run.pending += 1

        def step() -> None:
            try:
                fn()
            finally:
                run.pending -= 1

        self.ctx.clock.schedule(when, step, label)

    def event(
        self,
        type_: str,
        description: str,
        *,
        state: str = "Completed",
        vm: Vm | None = None,
        host: Host | None = None,
        level: str = "INFO",
    ) -> None:
        """Append a system-account event."""
        st = self.ctx.state
        resource = vm or host
        st.events.append(
            Event(
                id=st.next_id("event"),
                uuid=st.new_uuid(),
                type=type_,
                level=level,
                description=description,
                account="system",
                created=self.ctx.clock.time(),
                state=state,
                resource_id=resource.uuid if resource else None,
                resource_type=("VirtualMachine" if vm else "Host") if resource else None,
                resource_name=resource.name if resource else None,
            )
        )

    def set_host_status(self, host: Host, status: str) -> None:
        """Move a host to ``status`` (a change bumps its ``update_count``)."""
        if host.status != status:
            host.status = status
            host.update_count += 1

    def set_ha_state(self, host: Host, hastate: str) -> None:
        """Move a host with Host-HA on to ``hastate``; fencing transitions write an event."""
        if host.ha_config and host.ha_enabled and host.ha_state != hastate:
            old = host.ha_state
            host.ha_state = hastate
            if hastate in ("Recovering", "Fencing", "Fenced"):
                self.event(
                    "HA.STATE.TRANSITION",
                    f"Transitioned host HA state from:{old} to:{hastate} due to event:"
                    f"{'Fenced' if hastate == 'Fenced' else 'Fencing'} for the host id:{host.id}",
                    host=host,
                )

    def vm_changed(self, vm: Vm, **changes: Any) -> None:
        """Update VM columns as ``VMInstanceDao.updateState`` does (``update_count``, time)."""
        for name, value in changes.items():
            setattr(vm, name, value)
        vm.update_count += 1
        vm.last_updated = self.ctx.clock.time()
