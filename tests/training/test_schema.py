from __future__ import annotations

import jsonschema
import pytest
from hammer.training.schema import openai_function, xlam_type_schema

from tests.training.training_helpers import assert_answers_valid


class TestXlamTypes:
    @pytest.mark.parametrize("text, schema, optional", [
        ("str", {"type": "string"}, False),
        ("int, optional", {"type": "integer"}, True),
        ("Optional[float]", {"type": "number"}, True),
        ("List[str]", {"type": "array", "items": {"type": "string"}}, False),
        ("Tuple[int, int]", {"type": "array"}, False),
        ("Dict[str, Any]", {"type": "object"}, False),
        ("Union[str, int]", {}, False),
    ])
    def test_mapping(self, text, schema, optional):
        assert xlam_type_schema(text) == (schema, optional)


class TestOpenAIFunction:
    def test_sample_answers_validate_against_their_tools(self, sample):
        for example in sample:
            assert_answers_valid(example)

    def test_unknown_argument_and_missing_required_are_rejected(self, sample):
        tool = openai_function(sample[0]["tools"][0])  # get_current_weather(city, units="celsius")
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate({"city": "Rome", "town": "x"}, tool["parameters"])
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate({"units": "celsius"}, tool["parameters"])
