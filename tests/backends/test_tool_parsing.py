"""tool_choice="auto" on a template that knows tools: tools reach the prompt through the
template, and the family's call markup is parsed by mlx-lm's parser. A tiny random qwen2
stands in for the model; its output is forced through a grammar to the call's text, so
what is under test is the parsing, not the model."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from tests.helpers.textmodels import FLOAT32_ACTIVATIONS, make_tiny_qwen2

from mlxk.backends.structured import Constraint
from mlxk.backends.text import TextRunner, load_text
from mlxk.backends.tools import ToolStream

# The shape of Qwen2.5's template: tools into the system turn, calls as <tool_call> JSON.
TOOLS_TEMPLATE = (
    "{%- if tools %}<|im_start|>system\nTools:\n{%- for tool in tools %}\n{{ tool | tojson }}"
    '{%- endfor %}\nCall as <tool_call>{"name": ..., "arguments": ...}</tool_call><|im_end|>\n'
    "{%- endif %}{%- for m in messages %}<|im_start|>{{ m.role }}\n"
    "{%- if m.tool_calls %}{%- for tool_call in m.tool_calls %}<tool_call>{{ tool_call.name }}"
    "</tool_call>{%- endfor %}{%- else %}{{ m.content }}{%- endif %}<|im_end|>\n{%- endfor %}"
    "{%- if add_generation_prompt %}<|im_start|>assistant\n{%- endif %}"
)
WEATHER = {"type": "function", "function": {"name": "get_weather", "parameters": {
    "type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}  # fmt: skip
CALL_TEXT = 'Let me check. <tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>'


@pytest.fixture(scope="module")
def runner(tmp_path_factory: pytest.TempPathFactory) -> TextRunner:
    path = make_tiny_qwen2(tmp_path_factory.mktemp("tools") / "qwen2", context=1024)
    cfg_path = Path(path) / "tokenizer_config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg["chat_template"] = TOOLS_TEMPLATE
    cfg_path.write_text(json.dumps(cfg))
    return load_text(path, float32_activations=FLOAT32_ACTIVATIONS)


def test_tools_reach_the_prompt_through_the_template(runner: TextRunner) -> None:
    plan = runner.tool_plan([WEATHER], "auto")
    assert plan.in_template and plan.start == "<tool_call>" and plan.parser is not None
    ids = runner.encode_prompt([{"role": "user", "content": "Weather?"}], tools=plan)
    prompt = runner.tokenizer.decode(ids)
    assert '"name": "get_weather"' in prompt and "Weather?" in prompt


def test_auto_mode_parses_the_family_markup_from_generated_text(runner: TextRunner) -> None:
    from llguidance import LLMatcher

    forced = Constraint(LLMatcher.grammar_from_regex(re.escape(CALL_TEXT)), "test")
    plan = runner.tool_plan([WEATHER], "auto")
    ids = runner.encode_prompt([{"role": "user", "content": "Weather?"}], tools=plan)
    assert ids
    stream = ToolStream(plan.mode, plan.start, plan.end, plan.parser, plan.tools)
    pieces, text = [], ""
    for chunk in runner.stream(prompt="Weather?", max_tokens=200, constraint=forced):
        text += chunk.text
        pieces += stream.feed(chunk.text)
    pieces += stream.finish()
    assert text == CALL_TEXT  # the grammar made the random model say exactly this
    content = "".join(p.text for p in pieces if p.kind == "content")
    calls = [p for p in pieces if p.kind == "call"]
    args = "".join(p.text for p in pieces if p.kind == "arguments")
    assert content.strip() == "Let me check." and [c.text for c in calls] == ["get_weather"]
    assert json.loads(args) == {"city": "Paris"}


def test_a_reply_without_markup_is_content(runner: TextRunner) -> None:
    plan = runner.tool_plan([WEATHER], "auto")
    stream = ToolStream(plan.mode, plan.start, plan.end, plan.parser, plan.tools)
    pieces = stream.feed("It is sunny <tool") + stream.feed(" maybe") + stream.finish()
    assert [p.kind for p in pieces] == ["content"] * len(pieces) and stream.calls == 0
    assert "".join(p.text for p in pieces) == "It is sunny <tool maybe"
