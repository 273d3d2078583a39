"""Splitting streamed model output into complete calls."""

from __future__ import annotations

import json

from hammer.server.tool_stream import CallScanner
from hypothesis import given
from hypothesis import strategies as st

from hammer.prompt_format import Call, render_calls

texts = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=12)
call_lists = st.lists(st.builds(Call, st.text(min_size=1, max_size=8),
                                st.dictionaries(texts, texts | st.integers(), max_size=3)), max_size=4)


class TestCallScanner:
    @given(call_lists, st.lists(st.integers(min_value=1, max_value=7), min_size=1, max_size=50))
    def test_any_chunking_yields_each_call_once_in_order(self, calls, sizes):
        text = render_calls(calls)
        scanner, found, pos, i = CallScanner(), [], 0, 0
        while pos < len(text):
            size = sizes[i % len(sizes)]
            found += scanner.feed(text[pos:pos + size])
            pos, i = pos + size, i + 1
        assert [json.loads(f) for f in found] == [c.to_json() for c in calls]
        assert scanner.closed and scanner.partial == ""

    def test_brackets_inside_strings_do_not_count(self):
        scanner = CallScanner()
        assert scanner.feed('[{"name": "f", "arguments": {"q": "]}\\"{["}}') == ['{"name": "f", "arguments": {"q": "]}\\"{["}}']
        assert not scanner.closed

    def test_truncated_element_is_partial(self):
        scanner = CallScanner()
        assert scanner.feed('```\n[{"name": "f", "arguments": {"q": "abc') == []
        assert scanner.partial.startswith('{"name"') and scanner.opened and not scanner.closed

    def test_text_after_the_list_is_ignored(self):
        scanner = CallScanner()
        scanner.feed("[]\n```")
        assert scanner.closed and scanner.feed('{"x": 1}') == []
