"""SRS: the client of its HTTP API (streams, clients, kicks, readiness) for one or several
origins."""
