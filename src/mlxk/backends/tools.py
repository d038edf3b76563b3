"""Tool calling for text models: how tools reach the prompt, and how calls come back out.

* Templates that know tools (Qwen2.5, Llama 3.1, …) get them through ``apply_chat_template``
  and answer with their family's markup, parsed by mlx-lm's tool parser for that family.
* Templates that do not (SmolLM2's) get a generic tool prompt in the system message, as LM
  Studio's default tool use does; the call is a JSON object ``{"name", "arguments"}``.
* ``tool_choice`` ``required`` or a named function: the call is decoded under a grammar
  (backends.structured), so it always parses and always matches the tool's schema.

``ToolStream`` turns generated text into content and call pieces as it arrives, so calls
stream as OpenAI's ``delta.tool_calls`` chunks.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from typing import Any, Literal

Mode = Literal["forced", "auto"]

GENERIC_TOOL_PROMPT = """You can call these tools (JSON schemas of their arguments):
{tools}
To call a tool, answer with only a JSON object and nothing else:
{{"name": "<tool name>", "arguments": {{<the arguments>}}}}
{rule}"""
_RULE = {
    "auto": "Call a tool only when it helps to answer; otherwise answer normally.",
    "forced": "You must call a tool now.",
}


def template_knows_tools(tokenizer: Any) -> bool:
    template = getattr(tokenizer, "chat_template", None) or ""
    return isinstance(template, str) and "tools" in template


def generic_tool_prompt(tools: list[dict[str, Any]], mode: Mode) -> str:
    listed = "\n".join(json.dumps(t["function"], ensure_ascii=False) for t in tools)
    return GENERIC_TOOL_PROMPT.format(tools=listed, rule=_RULE[mode])


def history_for_template(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """OpenAI's history as Hugging Face templates want it: call arguments as objects."""
    out = []
    for m in messages:
        calls = m.get("tool_calls")
        if calls:
            m = {**m, "tool_calls": [_hf_call(c) for c in calls]}
        out.append(m)
    return out


def _hf_call(call: dict[str, Any]) -> dict[str, Any]:
    fn = call["function"]
    try:
        args: Any = json.loads(fn["arguments"])
    except (TypeError, ValueError):
        args = fn["arguments"]
    return {
        "type": "function",
        "id": call.get("id"),
        "function": {"name": fn["name"], "arguments": args},
    }


def history_as_text(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """For templates without tool roles: calls become the assistant's JSON, results a user
    turn that names the tool (looked up by ``tool_call_id``)."""
    names: dict[str, str] = {}
    out: list[dict[str, Any]] = []
    for m in messages:
        calls = m.get("tool_calls") or []
        for c in calls:
            names[c.get("id") or ""] = c["function"]["name"]
        if calls:
            text = "\n".join(json.dumps(_hf_call(c)["function"]) for c in calls)
            out.append({"role": "assistant", "content": text})
        elif m.get("role") == "tool":
            name = names.get(m.get("tool_call_id") or "", "the tool")
            out.append({"role": "user", "content": f"Result of {name}: {m.get('content', '')}"})
        else:
            out.append({"role": m["role"], "content": m.get("content", "")})
    return out


@dataclass(frozen=True)
class Piece:
    kind: Literal["content", "call", "arguments"]
    text: str = ""  # content text, the call's name, or an arguments fragment
    index: int = 0
    call_id: str = ""


def _new_id() -> str:
    return "call_" + uuid.uuid4().hex[:24]


@dataclass
class ToolStream:
    """Generated text → content and tool-call pieces, as the text arrives."""

    mode: Mode
    start: str | None = None  # the template family's call markers (auto mode)
    end: str | None = None
    parser: Any = None  # mlx-lm's parse_tool_call(text, tools)
    tools: list[dict[str, Any]] = field(default_factory=list)
    text: str = ""
    sent: int = 0  # how much of ``text`` has become pieces
    calls: int = 0
    _open: bool = False  # a forced call whose name was sent

    def feed(self, piece: str) -> list[Piece]:
        self.text += piece
        return self._forced() if self.mode == "forced" else self._auto(final=False)

    def finish(self) -> list[Piece]:
        if self.mode == "forced":
            out = self._forced()
            rest = self.text[self.sent :].rstrip()
            if rest.endswith("}"):
                rest = rest[:-1]  # the wrapper's own closing brace
            if rest:
                out.append(Piece("arguments", rest, 0))
            self.sent = len(self.text)
            return out
        return self._auto(final=True)

    def _forced(self) -> list[Piece]:
        """``{"name":"X","arguments":{…}}`` under a grammar: the name, then the arguments
        as they come (holding back the wrapper's closing brace and what may precede it)."""
        out: list[Piece] = []
        if not self._open:
            head = '{"name":"'
            at = self.text.find('","arguments":', len(head))
            if not self.text.startswith(head) or at < 0:
                return out
            name = self.text[len(head) : at]
            out.append(Piece("call", name, 0, _new_id()))
            self._open, self.calls = True, 1
            self.sent = at + len('","arguments":')
        # trailing braces may include the wrapper's own: they wait for more text or finish()
        safe = max(self.sent, len(self.text.rstrip().rstrip("}")))
        if safe > self.sent:
            out.append(Piece("arguments", self.text[self.sent : safe], 0))
            self.sent = safe
        return out

    def _auto(self, *, final: bool) -> list[Piece]:
        if self.start is None:
            return self._auto_generic(final)
        out: list[Piece] = []
        while True:
            at = self.text.find(self.start, self.sent)
            if at < 0:
                keep = 0 if final else _partial(self.text, self.start)
                end = max(self.sent, len(self.text) - keep)
                if end > self.sent:
                    out.append(Piece("content", self.text[self.sent : end]))
                    self.sent = end
                return out
            if at > self.sent:
                out.append(Piece("content", self.text[self.sent : at]))
            close = self.text.find(self.end or "", at + len(self.start)) if self.end else -1
            if close < 0 and not final:
                self.sent = at
                return out
            body_end = close if close >= 0 else len(self.text)
            out += self._parsed(self.text[at + len(self.start) : body_end])
            self.sent = body_end + (len(self.end or "") if close >= 0 else 0)

    def _parsed(self, body: str) -> list[Piece]:
        call = self.parser(body, self.tools)
        calls = call if isinstance(call, list) else [call]
        out = []
        for c in calls:
            args = c.get("arguments", {})
            text = args if isinstance(args, str) else json.dumps(args, ensure_ascii=False)
            out += [Piece("call", str(c["name"]), self.calls, _new_id()),
                    Piece("arguments", text, self.calls)]  # fmt: skip
            self.calls += 1
        return out

    def _auto_generic(self, final: bool) -> list[Piece]:
        """No markers: a reply that is one JSON ``{"name", "arguments"}`` object is a call."""
        stripped = self.text.lstrip()
        could_be_call = stripped == "" or '{"name"'.startswith(stripped[:7])
        if could_be_call and not final:
            return []  # wait: it may still become a call
        if self.sent:
            rest, self.sent = self.text[self.sent :], len(self.text)
            return [Piece("content", rest)] if rest else []
        self.sent = len(self.text)
        try:
            obj = json.loads(stripped) if could_be_call else None
        except ValueError:
            obj = None
        known = {t["function"]["name"] for t in self.tools}
        if isinstance(obj, dict) and obj.get("name") in known and "arguments" in obj:
            args = obj["arguments"]
            text = args if isinstance(args, str) else json.dumps(args, ensure_ascii=False)
            self.calls = 1
            return [Piece("call", obj["name"], 0, _new_id()), Piece("arguments", text, 0)]
        return [Piece("content", self.text)] if self.text else []


def _partial(text: str, marker: str) -> int:
    """How many trailing characters could be the start of ``marker``."""
    for k in range(min(len(marker) - 1, len(text)), 0, -1):
        if marker.startswith(text[-k:]):
            return k
    return 0
