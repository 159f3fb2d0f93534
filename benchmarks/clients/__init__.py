"""One module per benchmarked client; each runs as its own process (see ``_harness``)."""
