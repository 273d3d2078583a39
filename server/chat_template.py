"""Render a model's own Jinja chat template (for requests without tools)."""

from __future__ import annotations

from typing import Any, Mapping, Sequence

from jinja2.sandbox import ImmutableSandboxedEnvironment

CHATML = (
    "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def render_chat_template(template: str | None, messages: Sequence[Mapping[str, Any]],
                         bos_token: str = "", eos_token: str = "") -> str:
    """The prompt ``template`` (ChatML when the model has none) makes of ``messages``."""
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)

    def raise_exception(message: str) -> None:
        raise ValueError(message)

    env.globals["raise_exception"] = raise_exception
    return env.from_string(template or CHATML).render(
        messages=list(messages), add_generation_prompt=True, bos_token=bos_token, eos_token=eos_token)
