"""The data plane: protocol-agnostic operations, the request pipeline and the repository."""
