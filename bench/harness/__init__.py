"""The benchmark harness behind ``make bench`` (standard library only; see bench/README.md)."""
