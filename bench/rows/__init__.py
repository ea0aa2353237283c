"""One module per row of ``make bench``; each runs alone as ``python -m bench.rows.<module>``."""
