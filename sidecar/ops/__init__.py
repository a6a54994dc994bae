"""Use cases: the command context, the applier, cleanup, report and the service.

Ops wire the lower layers together (client → snapshot → reconciler → plan → apply + ledger);
they never print tables or parse flags (that is ``sidecar.cli``).
"""
