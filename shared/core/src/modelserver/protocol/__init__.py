"""The transports: REST (KServe v1, Open Inference Protocol v2) and v2 gRPC."""
