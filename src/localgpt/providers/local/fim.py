"""Legacy text completions on the embedded model, with fill-in-the-middle.

Editors send a prefix as ``prompt`` and what follows the cursor as ``suffix``; the model fills
the gap when the prompt is laid out in its family's fill-in-the-middle format.
"""

from __future__ import annotations

from typing import Any

# Fill-in-the-middle prompt formats, by model family.
FIM_TEMPLATES = {
    "qwen": "<|fim_prefix|>{prefix}<|fim_suffix|>{suffix}<|fim_middle|>",
    "starcoder": "<fim_prefix>{prefix}<fim_suffix>{suffix}<fim_middle>",
    "codellama": "<PRE> {prefix} <SUF>{suffix} <MID>",
    "deepseek": "<｜fim▁begin｜>{prefix}<｜fim▁hole｜>{suffix}<｜fim▁end｜>",
}


def legacy_logprobs(chat: Any, offset: int) -> dict[str, Any]:
    """llama.cpp reports logprobs in the chat shape; legacy completions use parallel lists."""
    tokens = chat.get("content") or [] if isinstance(chat, dict) else []
    offsets = []
    for token in tokens:
        offsets.append(offset)
        offset += len(token["token"])
    return {
        "tokens": [t["token"] for t in tokens],
        "token_logprobs": [t["logprob"] for t in tokens],
        "top_logprobs": [
            {top["token"]: top["logprob"] for top in t.get("top_logprobs") or ()} for t in tokens
        ],
        "text_offset": offsets,
    }
