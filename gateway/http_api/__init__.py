"""The gateway's HTTP API (FastAPI): app wiring, routers, middleware and response schemas."""
