"""FMA Python SDK."""
