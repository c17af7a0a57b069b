"""LocalGPT: a local-first AI assistant with persistent memory and an OpenAI-compatible API."""

__version__ = "0.1.0"
