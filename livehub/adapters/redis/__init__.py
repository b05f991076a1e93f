"""Cluster mode adapters on Redis: the bus between nodes with presence, and a leader lock."""
