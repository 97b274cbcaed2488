"""Machine routes: /healthz now; /api/v1 (bearer API keys, JSON only) builds on this."""
