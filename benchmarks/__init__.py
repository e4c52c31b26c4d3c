"""Performance benchmarks (run by `make bench`, not by `make test`); each writes JSON and a markdown table."""
