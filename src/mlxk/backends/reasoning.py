"""Reasoning models (``<think>`` … ``</think>`` and mlx-lm's other thinking markers): the
reasoning goes to ``reasoning_content``, the content stays clean — as the text streams."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ReasoningPlan:
    start: str  # the family's markers, as mlx-lm's tokenizer wrapper knows them
    end: str
    opened: bool  # the prompt ends inside a thinking block (templates that open it)


class ReasoningSplit:
    """Text → (reasoning, content), holding back what may be the start of a marker."""

    def __init__(self, plan: ReasoningPlan) -> None:
        self.plan = plan
        self.inside = plan.opened
        self.pending = ""

    def feed(self, text: str) -> tuple[str, str]:
        self.pending += text
        reasoning: list[str] = []
        content: list[str] = []
        while True:
            marker = self.plan.end if self.inside else self.plan.start
            at = self.pending.find(marker)
            if at < 0:
                break
            (reasoning if self.inside else content).append(self.pending[:at])
            self.pending = self.pending[at + len(marker) :]
            self.inside = not self.inside
        keep = _partial(self.pending, self.plan.end if self.inside else self.plan.start)
        ready, self.pending = (
            self.pending[: len(self.pending) - keep],
            self.pending[len(self.pending) - keep :],
        )
        (reasoning if self.inside else content).append(ready)
        return "".join(reasoning), "".join(content)

    def finish(self) -> tuple[str, str]:
        rest, self.pending = self.pending, ""
        return (rest, "") if self.inside else ("", rest)


def _partial(text: str, marker: str) -> int:
    for k in range(min(len(marker) - 1, len(text)), 0, -1):
        if marker.startswith(text[-k:]):
            return k
    return 0
