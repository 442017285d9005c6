"""`janus serve`: an HTTP JSON translation service with dynamic micro-batching (pip install janusgen[serve]).

config: the service's limits (no web dependency); batcher: gathers concurrent requests into token-budgeted
batches; metrics: Prometheus text; server: the Starlette app and the uvicorn runner."""
