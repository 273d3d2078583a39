"""Render a model's own Jinja chat template as its authors expect (requests without tools).

Template authors write for transformers' ``apply_chat_template``, and llama.cpp and vLLM give
templates the same environment, so this module does too: a sandbox with ``trim_blocks``,
``lstrip_blocks`` and ``{% break %}``/``{% continue %}``; ``tojson`` as ``json.dumps`` with
``ensure_ascii=False`` (Jinja's own escapes non-ASCII and ``<>&'`` as HTML, which changes the
prompt); ``raise_exception``; ``strftime_now``; ``{% generation %}`` blocks rendered as their
body; and the variables ``messages``, ``tools``, ``documents``, ``add_generation_prompt`` and the
special tokens. Messages are passed as transformers and vLLM pass them: keys whose value is None
are dropped, and tool-call ``arguments`` are objects, not the JSON strings OpenAI clients send.
"""

from __future__ import annotations

import functools
import json
import logging
from datetime import datetime
from typing import Any, Mapping, NoReturn, Sequence

import jinja2
from jinja2.ext import Extension, loopcontrols
from jinja2.sandbox import ImmutableSandboxedEnvironment

log = logging.getLogger(__name__)

CHATML = (
    "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


class TemplateRejected(ValueError):
    """The template's ``raise_exception`` refused the conversation (role order, ...): the client's input."""


class TemplateFailed(RuntimeError):
    """The template itself failed (syntax error, a bug in it): not the client's fault."""


def _raise_exception(message: str) -> NoReturn:
    raise TemplateRejected(message)


def _tojson(value: Any, ensure_ascii: bool = False, indent: int | None = None,
            separators: tuple[str, str] | None = None, sort_keys: bool = False) -> str:
    """transformers' ``tojson``: the template's own JSON text, without HTML escaping."""
    return json.dumps(value, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)


def _strftime_now(format: str) -> str:
    return datetime.now().strftime(format)


class _Generation(Extension):
    """``{% generation %}...{% endgeneration %}`` (transformers' assistant-mask marker): its body as is."""

    tags = {"generation"}

    def parse(self, parser: Any) -> jinja2.nodes.Node:
        lineno = next(parser.stream).lineno
        body = parser.parse_statements(("name:endgeneration",), drop_needle=True)
        return jinja2.nodes.Scope(body, lineno=lineno)


@functools.lru_cache(maxsize=16)
def compiled(template: str) -> jinja2.Template:
    """The template compiled once (compiling takes about a millisecond; a server has one template)."""
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[loopcontrols, _Generation])
    env.filters["tojson"] = _tojson
    env.globals["raise_exception"] = _raise_exception
    env.globals["strftime_now"] = _strftime_now
    return env.from_string(template)


def render_chat_template(template: str | None, messages: Sequence[Mapping[str, Any]],
                         bos_token: str = "", eos_token: str = "", *,
                         tools: Sequence[Mapping[str, Any]] | None = None,
                         add_generation_prompt: bool = True) -> str:
    """The prompt ``template`` (ChatML when the model has none) makes of ``messages``.

    Raises ``TemplateRejected`` when the template refuses the conversation, ``TemplateFailed``
    when the template itself fails.

    >>> render_chat_template("{% for m in messages %}{{ m.content | tojson }}{% break %}{% endfor %}",
    ...                      [{"role": "user", "content": "Ünïcode <b>'s"}, {"role": "user", "content": "x"}])
    '"Ünïcode <b>\\'s"'
    """
    try:
        source = compiled(template or CHATML)
    except jinja2.TemplateSyntaxError as exc:
        raise TemplateFailed(f"line {exc.lineno}: {exc.message}") from exc
    try:
        return source.render(messages=[template_message(m) for m in messages], tools=tools, documents=None,
                             add_generation_prompt=add_generation_prompt, bos_token=bos_token, eos_token=eos_token)
    except TemplateRejected:
        raise
    except Exception as exc:  # anything else is the template's own bug (undefined names, type errors, ...)
        raise TemplateFailed(f"{type(exc).__name__}: {exc}") from exc


def usable_template(template: str | Mapping[str, str] | None) -> tuple[str | None, str | None]:
    """``template`` if it renders a one-message conversation, else None (ChatML) and why: decided once,
    when the model loads, as llama.cpp falls back to ChatML for a template it cannot parse. Without it
    every request without tools would fail, the same way, with a 500.

    >>> usable_template("{{ messages[0].content }}")
    ('{{ messages[0].content }}', None)
    >>> usable_template("{{ messages[0].content | no_such_filter }}")
    (None, "line 1: No filter named 'no_such_filter'.")
    """
    if isinstance(template, Mapping):  # transformers' named templates: the default one serves chat
        template = template.get("default")
    if template is not None and not isinstance(template, str):
        return None, f"not a template text but a {type(template).__name__}"
    try:
        render_chat_template(template, ({"role": "user", "content": "Hello"},))
    except TemplateRejected:  # it refuses this conversation; a client's may suit it
        return template, None
    except TemplateFailed as exc:
        return None, str(exc)
    return template, None


def template_or_chatml(template: str | Mapping[str, str] | None, model: str) -> str | None:
    """``usable_template``, logging why a model's template is replaced by ChatML."""
    usable, problem = usable_template(template)
    if problem is not None:
        log.error("The chat template of %s cannot be used (%s): requests without tools get ChatML instead, "
                  "as llama.cpp does.", model, problem)
    return usable


def template_message(message: Mapping[str, Any]) -> dict[str, Any]:
    """A message as templates read it: no None values, tool-call arguments as objects.

    >>> message = template_message({"role": "assistant", "content": None, "tool_calls": [
    ...     {"id": "c1", "type": "function", "function": {"name": "f", "arguments": '{"a": 1}'}}]})
    >>> sorted(message), message["tool_calls"][0]["function"]
    (['role', 'tool_calls'], {'name': 'f', 'arguments': {'a': 1}})
    """
    plain = {key: value for key, value in message.items() if value is not None}
    if plain.get("tool_calls"):
        plain["tool_calls"] = [_object_arguments(call) for call in plain["tool_calls"]]
    return plain


def _object_arguments(call: Mapping[str, Any]) -> dict[str, Any]:
    function = dict(call.get("function") or {})
    arguments = function.get("arguments")
    if isinstance(arguments, str):
        try:
            function["arguments"] = json.loads(arguments) if arguments.strip() else {}
        except json.JSONDecodeError:  # left as sent: serving has already refused non-objects
            pass
    return {**call, "function": function}


# A conversation whose call and result only show up in the prompt if the template renders them.
_PROBE_NAME, _PROBE_RESULT = "hammer_probe_function", "hammer_probe_result"
_PROBE = (
    {"role": "user", "content": "What is the weather?"},
    {"role": "assistant", "content": "", "tool_calls": [{"id": "call_probe", "type": "function", "function": {
        "name": _PROBE_NAME, "arguments": '{"city": "Paris"}'}}]},
    {"role": "tool", "tool_call_id": "call_probe", "content": _PROBE_RESULT},
)


def handles_tool_calls(template: str | None) -> bool:
    """Whether a chat template renders assistant ``tool_calls`` and ``tool`` results (else a calls-only
    turn comes out empty, or the template refuses the ``tool`` role). Found by rendering a probe
    conversation, as llama.cpp detects a template's capabilities, not by reading its source.

    >>> handles_tool_calls(CHATML)
    False
    >>> handles_tool_calls("{% for m in messages %}{{ m.content }}{% for c in m.tool_calls or [] %}"
    ...                    "{{ c.function.name }}{% endfor %}{% endfor %}")
    True
    """
    try:
        prompt = render_chat_template(template, _PROBE)
    except (TemplateRejected, TemplateFailed):
        return False
    return _PROBE_NAME in prompt and _PROBE_RESULT in prompt
