"""The agent-loop helpers: call identity, answered calls, and what the answer turn sees."""

from __future__ import annotations

import pytest
from hammer.server.agent_loop import (
    answer_messages,
    answered_calls,
    answered_tools,
    call_key,
    current_turn,
    has_tool_results,
)
from hammer.server.constraints import ToolMode, calls_schema, plan_tools, remaining_plan
from hammer.server.grammar import SchemaLimits
from hammer.server.protocol import NamedToolChoice, Tool


def call(call_id: str, name: str, arguments: str) -> dict:
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}


QUESTION = {"role": "user", "content": "Weather in Paris?"}
CALLED = {"role": "assistant", "content": None, "tool_calls": [call("c1", "get_weather", '{"city": "Paris"}')]}
RESULT = {"role": "tool", "tool_call_id": "c1", "content": "17 C"}


class TestCallKey:
    def test_argument_order_and_number_spelling_do_not_matter(self):
        assert call_key("f", {"a": 1, "b": {"c": [2.0]}}) == call_key("f", {"b": {"c": [2]}, "a": 1.0})

    def test_name_and_values_do(self):
        assert call_key("f", {"a": 1}) != call_key("g", {"a": 1})
        assert call_key("f", {"a": 1}) != call_key("f", {"a": "1"})


class TestCurrentTurn:
    def test_starts_after_the_last_user_message(self):
        messages = [QUESTION, CALLED, RESULT, {"role": "user", "content": "And Rome?"}, CALLED]
        assert list(current_turn(messages)) == [CALLED]


class TestHasToolResults:
    def test_only_results_since_the_last_question_count(self):
        assert has_tool_results([QUESTION, CALLED, RESULT])
        assert not has_tool_results([QUESTION, CALLED, RESULT, {"role": "user", "content": "And Rome?"}])
        assert not has_tool_results([QUESTION])


class TestAnsweredCalls:
    def test_a_call_with_its_result_is_answered(self):
        assert answered_calls([QUESTION, CALLED, RESULT]) == {call_key("get_weather", {"city": "Paris"})}

    def test_a_call_without_result_is_not(self):
        assert answered_calls([QUESTION, CALLED]) == frozenset()

    def test_results_match_by_position_when_ids_differ(self):
        other_id = {**RESULT, "tool_call_id": "something-else"}
        assert answered_calls([QUESTION, CALLED, other_id]) == {call_key("get_weather", {"city": "Paris"})}

    def test_a_new_question_starts_afresh(self):
        assert answered_calls([QUESTION, CALLED, RESULT, {"role": "user", "content": "Again?"}]) == frozenset()


class TestAnswerMessages:
    def test_templates_with_tool_support_get_the_messages_unchanged(self):
        messages = [QUESTION, CALLED, RESULT]
        assert answer_messages(messages, template_handles_tools=True) == messages

    def test_plain_templates_get_no_empty_turn_and_no_tool_role(self):
        out = answer_messages([{"role": "system", "content": "Be brief."}, QUESTION, CALLED, RESULT], False)
        assert [m["role"] for m in out] == ["system", "user", "assistant", "user"]
        assert all(m["content"] for m in out)
        assert 'get_weather({"city": "Paris"})' in out[2]["content"]
        assert "17 C" in out[3]["content"] and out[3]["content"].endswith("Weather in Paris?")

    def test_several_results_merge_into_one_user_turn(self):
        two = {"role": "assistant", "tool_calls": [call("a", "f", "{}"), call("b", "g", "{}")]}
        out = answer_messages([QUESTION, two, {"role": "tool", "tool_call_id": "a", "content": "1"},
                               {"role": "tool", "tool_call_id": "b", "content": "2"}], False)
        assert [m["role"] for m in out] == ["user", "assistant", "user"]
        assert "The result of f is: 1" in out[2]["content"] and "The result of g is: 2" in out[2]["content"]

    def test_no_results_means_no_answer_instruction(self):
        out = answer_messages([QUESTION], False)
        assert out == [QUESTION]


class TestAnsweredTools:
    def test_names_the_tools_whose_calls_got_a_result(self):
        two = {"role": "assistant", "tool_calls": [call("a", "f", "{}"), call("b", "g", "{}")]}
        assert answered_tools([QUESTION, two, {"role": "tool", "tool_call_id": "b", "content": "2"}]) == {"g"}

    def test_a_new_question_starts_afresh(self):
        assert answered_tools([QUESTION, CALLED, RESULT, {"role": "user", "content": "Again?"}]) == frozenset()


def tools(*names: str) -> list[Tool]:
    return [Tool.model_validate({"type": "function", "function": {"name": n}}) for n in names]


def plan(choice, *names: str, parallel: bool = True):
    return plan_tools(tools(*names), choice, parallel, 8, SchemaLimits())


class TestRemainingPlan:
    """What a pass under "required" offers once the model only repeated answered calls."""

    def test_offers_the_tools_not_called_and_still_asks_for_a_call(self):
        remaining = remaining_plan(plan("required", "get_weather", "final_result"), frozenset({"get_weather"}))
        assert remaining is not None and remaining.mode == ToolMode.REQUIRED
        assert [f.name for f in remaining.functions] == ["final_result"]
        schema = calls_schema(remaining, 8, 64)
        assert schema["minItems"] == 1 and schema["items"]["properties"]["name"] == {"const": "final_result"}

    def test_nothing_left_when_every_tool_was_called(self):
        assert remaining_plan(plan("required", "f", "g"), frozenset({"f", "g"})) is None

    @pytest.mark.parametrize("choice", ["auto", NamedToolChoice.model_validate(
        {"type": "function", "function": {"name": "f"}})])
    def test_only_required_gets_another_offer(self, choice):
        assert remaining_plan(plan(choice, "f", "g"), frozenset({"f"})) is None


class TestNamedChoice:
    def test_a_named_choice_allows_exactly_one_call_even_with_parallel_calls(self):
        named = NamedToolChoice.model_validate({"type": "function", "function": {"name": "g"}})
        schema = calls_schema(plan(named, "f", "g", parallel=True), 8, 64)
        assert (schema["minItems"], schema["maxItems"]) == (1, 1)
        assert schema["items"]["properties"]["name"] == {"const": "g"}

    def test_required_still_allows_parallel_calls(self):
        assert calls_schema(plan("required", "f", "g"), 8, 64)["maxItems"] == 8
