"""SQLite: the embedded mode's room store and webhook outbox, one file, one writer thread."""
