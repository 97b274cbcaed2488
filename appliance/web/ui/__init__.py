"""Browser routes (session cookie + CSRF). Handlers are thin: parse, call a service, render."""
