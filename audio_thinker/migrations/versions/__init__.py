"""Migration scripts, oldest first: 0001 (initial schema), 0002 (votes, rating source and lead time)."""
