"""Turning chat messages into a prompt with llama-cpp-python's chat formats."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from cocoon_p2p.inference.errors import BadRequest, ModelFileError


@dataclass(frozen=True)
class RenderedChat:
    prompt: str
    stops: list[str]
    # False when the template already wrote the BOS token into the text.
    add_bos: bool


class ChatFormatter:
    """Renders messages with a named llama.cpp format or the GGUF's own Jinja template."""

    def __init__(self, name: str, render: Callable[..., Any], *, merge_system: bool) -> None:
        self.name = name
        self._render = render
        self._merge_system = merge_system

    @classmethod
    def for_llama(cls, llm: Any, chat_format: str | None) -> ChatFormatter:
        """``chat_format`` None means: use the template in the GGUF metadata."""
        from llama_cpp import llama_chat_format as lcf

        if chat_format is None:
            template = llm.metadata.get("tokenizer.chat_template")
            if not template:
                raise ModelFileError("the model has no chat template; pass a chat_format such as 'gemma'")

            def token_text(token_id: int) -> str:
                return llm._model.token_get_text(token_id) if token_id >= 0 else ""

            jinja = lcf.Jinja2ChatFormatter(
                template=template,
                eos_token=token_text(llm.token_eos()),
                bos_token=token_text(llm.token_bos()),
                stop_token_ids=[llm.token_eos()],
            )
            return cls("gguf-template", jinja, merge_system=False)
        known: dict[str, Callable[..., Any]] = {
            "gemma": lcf.format_gemma,
            "chatml": lcf.format_chatml,
            "llama-2": lcf.format_llama2,
            "llama-3": lcf.format_llama3,
            "mistral-instruct": lcf.format_mistral_instruct,
            "zephyr": lcf.format_zephyr,
            "qwen": lcf.format_qwen,
            "alpaca": lcf.format_alpaca,
        }
        if chat_format not in known:
            raise ModelFileError(f"unknown chat format {chat_format!r}; known: {sorted(known)}")
        # llama.cpp's gemma format silently drops system messages; Google's own
        # template prepends them to the first user turn, so do that instead.
        return cls(chat_format, known[chat_format], merge_system=chat_format == "gemma")

    def render(self, messages: list[dict[str, str]]) -> RenderedChat:
        msgs = [{"role": m["role"], "content": m["content"]} for m in messages]
        if self._merge_system:
            msgs = _merge_system_into_first_user(msgs)
        try:
            result = self._render(messages=msgs)
        except Exception as exc:  # a Jinja template can raise anything on odd input
            raise BadRequest(f"cannot format messages with {self.name}: {exc}") from exc
        stop = result.stop
        stops = [] if stop is None else [stop] if isinstance(stop, str) else list(stop)
        return RenderedChat(prompt=result.prompt, stops=[s for s in stops if s], add_bos=not result.added_special)


def _merge_system_into_first_user(messages: list[dict[str, str]]) -> list[dict[str, str]]:
    system = "\n\n".join(m["content"] for m in messages if m["role"] == "system")
    rest = [dict(m) for m in messages if m["role"] != "system"]
    if system:
        for m in rest:
            if m["role"] == "user":
                m["content"] = f"{system}\n\n{m['content']}"
                break
    return rest
