"""cloudstack-sidecar: merges the duplicate HA alerts of CloudStack 4.19.0-4.19.2 and 4.20.0."""

__version__ = "0.1.0"
