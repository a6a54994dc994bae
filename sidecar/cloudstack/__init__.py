"""CloudStack API access: signing, transport, pagination, typed models.

Kept import-light on purpose: ``sidecar.reconcile`` imports ``sidecar.model.resources``
and must not pull in httpx through this package's ``__init__``.
"""
