"""Cross-cutting support: settings, errors with exit codes, logging, redaction, GC pause.

Usable by every layer but ``model``; imports nothing from the layers above it.
"""
