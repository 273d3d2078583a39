"""Render a model's own Jinja chat template (for requests without tools)."""

from __future__ import annotations

import functools
from typing import Any, Mapping, Sequence

from jinja2 import Template
from jinja2.sandbox import ImmutableSandboxedEnvironment

CHATML = (
    "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def _raise_exception(message: str) -> None:
    raise ValueError(message)


@functools.lru_cache(maxsize=16)
def compiled(template: str) -> Template:
    """The template compiled once (compiling takes about a millisecond; a server has one template)."""
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
    env.globals["raise_exception"] = _raise_exception
    return env.from_string(template)


def render_chat_template(template: str | None, messages: Sequence[Mapping[str, Any]],
                         bos_token: str = "", eos_token: str = "") -> str:
    """The prompt ``template`` (ChatML when the model has none) makes of ``messages``."""
    return compiled(template or CHATML).render(
        messages=list(messages), add_generation_prompt=True, bos_token=bos_token, eos_token=eos_token)


def handles_tool_calls(template: str | None) -> bool:
    """Whether a chat template renders assistant ``tool_calls`` (else a calls-only turn comes out empty).

    >>> handles_tool_calls(CHATML), handles_tool_calls("{% for c in message.tool_calls %}{% endfor %}")
    (False, True)
    """
    return bool(template) and "tool_calls" in template
