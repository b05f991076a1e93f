"""livehub: the control plane in front of SRS (rooms, signaling, stream lifecycle)."""

__version__ = "0.1.0"
