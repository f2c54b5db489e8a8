"""The REST transport: KServe v1 and Open Inference Protocol v2 routes."""
