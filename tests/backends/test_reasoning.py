"""Thinking markers split off as the text streams, whatever the chunking."""

from __future__ import annotations

import pytest

from mlxk.backends.reasoning import ReasoningPlan, ReasoningSplit

PLAN = ReasoningPlan("<think>", "</think>", opened=False)
TEXT = "<think>The capital of France… is Paris.</think>\n\nParis."


@pytest.mark.parametrize("size", [1, 2, 3, 5, 7, len(TEXT)])
def test_reasoning_and_content_come_apart_in_any_chunking(size: int) -> None:
    split = ReasoningSplit(PLAN)
    parts = [split.feed(TEXT[i : i + size]) for i in range(0, len(TEXT), size)] + [split.finish()]
    assert "".join(r for r, _ in parts) == "The capital of France… is Paris."
    assert "".join(c for _, c in parts) == "\n\nParis."


def test_a_prompt_that_opened_the_block_starts_in_reasoning() -> None:
    split = ReasoningSplit(ReasoningPlan("<think>", "</think>", opened=True))
    assert split.feed("hmm</think>ok") == ("hmm", "ok")


def test_an_unclosed_block_stays_reasoning_and_a_lone_bracket_is_content() -> None:
    split = ReasoningSplit(PLAN)
    assert split.feed("a < b <thi") == ("", "a < b ")
    assert split.feed("nk>still thinking") == ("still thinking", "")
    assert split.finish() == ("", "")
