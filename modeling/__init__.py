"""Model definitions: torch + transformers only, relative imports only, so every file can travel as remote code."""
