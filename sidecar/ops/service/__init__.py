"""The long-running service: ``scheduler`` runs ``cycle``, which composes the other modules."""
