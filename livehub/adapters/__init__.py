"""Adapters by technology: ``sqlite`` and ``postgres`` (rooms and the webhook outbox, each with
its migrations), ``redis`` (the cluster's bus, presence, player counts and leader lock), ``srs``
(the SRS HTTP API). ``livehub.engines`` picks them for a config."""
