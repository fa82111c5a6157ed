"""A wait = yes stream server that exits at once without accepting."""
