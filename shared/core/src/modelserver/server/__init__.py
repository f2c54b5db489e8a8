"""The server: entry points, one server process, the worker supervisor, the listeners."""
