"""One RuntimeCase per runtime for test_conformance.py."""
