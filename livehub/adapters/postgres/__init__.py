"""PostgreSQL: the cluster's room store (with its migrations) and webhook outbox."""
