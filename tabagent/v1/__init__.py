"""Generated gRPC stubs for the tabagent.v1 API (do not edit; `make proto`)."""
