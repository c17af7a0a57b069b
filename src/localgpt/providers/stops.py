"""Stop sequences matched here rather than by the provider, when the client must learn which
one ended the reply (Anthropic's ``stop_reason: "stop_sequence"`` with ``stop_sequence``).

OpenAI-style engines cut the text at a stop string and say only ``finish_reason: "stop"``,
the same as for the end of a turn. A ``StopWatch`` instead reads the stream: text that could
be the start of a stop sequence is held back until it is known not to be; at a match the
text before it goes out, the reply finishes with ``stop``, and the upstream stream is closed
(so the model stops generating). ``matched`` then names the sequence.
"""

from __future__ import annotations

from collections.abc import Sequence

from localgpt.providers.base import EventBatches
from localgpt.providers.events import Finish, StreamEvent, TextDelta


class StopWatch:
    __slots__ = ("_held", "_hold", "matched", "sequences")

    def __init__(self, sequences: Sequence[str]) -> None:
        self.sequences = [s for s in dict.fromkeys(sequences) if s]
        self._hold = max((len(s) for s in self.sequences), default=1) - 1
        self._held = ""
        self.matched: str | None = None

    def _cut(self, text: str) -> tuple[str, int, str] | None:
        """The earliest match in ``text``: (text before it, where, the sequence)."""
        best: tuple[str, int, str] | None = None
        for sequence in self.sequences:
            at = text.find(sequence)
            if at >= 0 and (best is None or at < best[1]):
                best = (text[:at], at, sequence)
        return best

    def _text(self, event: TextDelta) -> list[StreamEvent]:
        text = self._held + event.text
        found = self._cut(text)
        if found is not None:
            self._held = ""
            self.matched = found[2]
            out: list[StreamEvent] = (
                [TextDelta(found[0], logprobs=event.logprobs)] if found[0] else []
            )
            return [*out, Finish("stop")]
        # Keep back what could still become a stop sequence.
        keep = 0
        for sequence in self.sequences:
            for size in range(min(len(sequence) - 1, len(text)), keep, -1):
                if text.endswith(sequence[:size]):
                    keep = size
                    break
        self._held = text[len(text) - keep :] if keep else ""
        ready = text[: len(text) - keep] if keep else text
        return [TextDelta(ready, logprobs=event.logprobs)] if ready else []

    async def watch(self, stream: EventBatches) -> EventBatches:
        """``stream`` with its text ended at the first stop sequence (choice 0)."""
        self._held, self.matched = "", None  # each model call is watched afresh
        try:
            async for batch in stream:
                out: list[StreamEvent] = []
                for event in batch:
                    if isinstance(event, TextDelta) and event.choice == 0:
                        out += self._text(event)
                        if self.matched is not None:
                            break
                        continue
                    if isinstance(event, Finish) and event.choice == 0 and self._held:
                        out.append(TextDelta(self._held))  # no match after all
                        self._held = ""
                    out.append(event)
                if out:
                    yield out
                if self.matched is not None:
                    return  # closing the upstream stops the model
            if self._held:
                yield [TextDelta(self._held)]
                self._held = ""
        finally:
            await stream.aclose()
