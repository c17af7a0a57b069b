"""The embedded model: GGUF files run in-process by llama.cpp (``provider``, ``engine``), its
tool decisions (``decisions``), fill-in-the-middle (``fim``) and packaged models
(``models``)."""

from localgpt.providers.local.provider import LocalProvider

__all__ = ["LocalProvider"]
