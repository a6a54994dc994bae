"""The domain, shared by every layer: constants, defaults, resources, Snapshot and Plan.

Pure data and parsing: imports nothing from another layer of the sidecar.
"""
