"""The v2 gRPC transport: ``inference.GRPCInferenceService`` on grpc.aio."""
