"""In memory: the embedded mode's own adapters (production code, not test doubles): player
counts, and the bus of one process. The in-process signaling hub is the domain's
:class:`livehub.domain.hub.Hub`, which the cluster hub holds too."""
