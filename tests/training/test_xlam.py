from __future__ import annotations

import json

import pytest
from hammer.training.xlam import RowError, load_xlam, parse_example, read_xlam

from tests.training.conftest import SAMPLE


class TestLoadXlam:
    def test_sample_set_parses_into_tools_and_answers(self, sample):
        assert len(sample) >= 40
        assert all(isinstance(e["tools"], list) and isinstance(e["answers"], list) for e in sample)
        assert any(len(e["answers"]) > 1 for e in sample), "sample needs parallel calls"
        assert any("default" in p for e in sample for t in e["tools"] for p in t["parameters"].values())

    def test_jsonl_gives_the_same_examples_as_json(self, tmp_path, sample):
        rows = json.loads(SAMPLE.read_text())
        path = tmp_path / "x.jsonl"
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
        assert load_xlam(path) == sample

    def test_missing_file_is_an_error_not_a_hub_lookup(self, tmp_path):
        with pytest.raises(FileNotFoundError):
            load_xlam(tmp_path / "nope.json")

    def test_row_without_query_is_rejected(self, tmp_path):
        path = tmp_path / "bad.json"
        path.write_text(json.dumps([{"tools": "[]", "answers": "[]"}]))
        with pytest.raises(RowError, match=r"^row 0: 'query' is missing"):
            load_xlam(path)


def good_row(**changes):
    row = {"query": "Weather in Paris?",
           "tools": json.dumps([{"name": "get_weather", "description": "Current weather.",
                                 "parameters": {"city": {"type": "str", "description": "City"}}},
                                {"name": "search", "description": "Web search.", "parameters": {}}]),
           "answers": json.dumps([{"name": "get_weather", "arguments": {"city": "Paris"}}])}
    row.update(changes)
    return {k: v for k, v in row.items() if v is not ...}


def problem(**changes) -> str:
    with pytest.raises(ValueError) as info:
        parse_example(good_row(**changes))
    return str(info.value)


class TestRowValidationNamesTheField:
    def test_good_row_passes_with_tools_as_string_or_list(self):
        assert parse_example(good_row())["tools"][0]["name"] == "get_weather"
        listed = parse_example(good_row(tools=json.loads(good_row()["tools"])))
        assert listed == parse_example(good_row())

    @pytest.mark.parametrize("field", ["query", "tools", "answers"])
    def test_missing_field(self, field):
        assert problem(**{field: ...}) == f"'{field}' is missing"

    def test_malformed_json_names_the_field(self):
        assert problem(answers='[{"name": "f" "arguments": {}}]').startswith(
            "'answers': Expecting ',' delimiter: line 1 column 15")

    def test_tools_not_a_list(self):
        assert problem(tools='{"name": "f"}') == "'tools' must be a JSON list, got an object"

    def test_query_not_a_string_or_empty(self):
        assert problem(query=3) == "'query' must be a string, got a number"
        assert problem(query="  ") == "'query' is empty"

    def test_tool_without_name_or_parameters(self):
        assert problem(tools=json.dumps([{"description": "d", "parameters": {}}])) == "'tools'[0]: 'name' is missing"
        assert problem(tools=json.dumps([{"name": "f", "description": "d"}]), answers="[]") == \
            "'tools'[0] (f): 'parameters' is missing"

    def test_answer_calling_an_unlisted_tool(self):
        assert problem(answers=json.dumps([{"name": "book_flight", "arguments": {}}])) == \
            "'answers'[0] calls 'book_flight', which is not in 'tools' (get_weather, search)"

    def test_answer_with_an_unknown_argument(self):
        assert problem(answers=json.dumps([{"name": "get_weather", "arguments": {"town": "Paris"}}])) == \
            "'answers'[0] (get_weather): argument 'town' is not a parameter of 'get_weather' (city)"

    def test_answer_without_arguments(self):
        assert problem(answers=json.dumps([{"name": "search"}])) == "'answers'[0] (search): 'arguments' is missing"

    def test_row_not_an_object(self):
        with pytest.raises(ValueError, match="expected an object"):
            parse_example(["query"])


class TestReadXlamNamesTheRow:
    def test_jsonl_rows_are_named_with_their_line(self, tmp_path):
        path = tmp_path / "x.jsonl"
        lines = [json.dumps(good_row()), "", json.dumps(good_row(tools=...)), "{broken", json.dumps(good_row())]
        path.write_text("\n".join(lines) + "\n")
        examples, errors = read_xlam(path)
        assert [e["id"] for e in examples] == [0, 3]  # positions kept: skipping does not renumber
        assert [str(e) for e in errors] == [
            "row 1 (line 3): 'tools' is missing",
            "row 2 (line 4): not valid JSON: Expecting property name enclosed in double quotes: line 1 column 2 (char 1)"]

    def test_json_list_rows_are_named_by_index(self, tmp_path):
        path = tmp_path / "x.json"
        path.write_text(json.dumps([good_row(), good_row(answers='[{"name": "x",}]')]))
        examples, errors = read_xlam(path)
        assert len(examples) == 1 and [e.row for e in errors] == [1] and errors[0].line is None
        assert str(errors[0]).startswith("row 1: 'answers': Expecting property name")

    def test_load_xlam_raises_the_first_bad_row_and_counts_the_rest(self, tmp_path):
        path = tmp_path / "x.json"
        path.write_text(json.dumps([good_row(), good_row(query=...), good_row(tools=...), good_row(answers=...)]))
        with pytest.raises(RowError, match=r"^row 1: 'query' is missing \(2 more bad rows\)$"):
            load_xlam(path)

    def test_a_json_file_that_does_not_parse_says_so(self, tmp_path):
        path = tmp_path / "x.json"
        path.write_text('[{"query": "q"')
        with pytest.raises(ValueError, match="x.json is not valid JSON"):
            read_xlam(path)
