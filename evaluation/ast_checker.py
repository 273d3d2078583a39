"""BFCL's AST checker for Python function calls, ported so scoring needs no BFCL runtime.

Ported from bfcl-eval 2026.3.23, ``bfcl_eval/eval_checker/ast_eval/ast_checker.py``
(Gorilla / Berkeley Function Calling Leaderboard, Copyright the Gorilla authors,
Apache License 2.0, https://github.com/ShishirPatil/gorilla). Importing the original pulls in
every model handler (anthropic, openai, tree_sitter, ...), so the Python path is copied here.

Changes from the original, all of them deliberate:
- Python only: the Java/JavaScript branches and their type converters are dropped.
- No ``model_name``: BFCL rewrites expected names with dots to underscores for OpenAI-style
  models; the caller maps returned names back to BFCL's names before checking instead.
- Type ``any`` accepts a value of any JSON type (the tool schema sent omits its type), where
  BFCL demands a string; values are still compared against the possible answers.
- Results are returned as ``Check`` objects rather than dicts.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

PYTHON_TYPE_MAPPING: dict[str, type] = {
    "string": str,
    "integer": int,
    "float": float,
    "boolean": bool,
    "array": list,
    "tuple": list,
    "dict": dict,
    "any": object,
}

# Types whose items are type-checked too (one level deep, as in BFCL).
PYTHON_NESTED_TYPE_CHECK_LIST = ("array", "tuple")

Call = dict[str, dict[str, Any]]  # {function_name: {param: value}}, BFCL's decoded call
Answer = dict[str, dict[str, list[Any]]]  # {function_name: {param: [allowed values]}}; "" = may be omitted


@dataclass(frozen=True)
class Check:
    valid: bool
    error_type: str = ""
    errors: list[Any] = field(default_factory=list)


OK = Check(True)


def _fail(error_type: str, message: Any) -> Check:
    return Check(False, error_type, [message])


def ast_checker(functions: list[dict[str, Any]], calls: list[Call], answers: list[Answer], category: str) -> Check:
    """Verdict for decoded ``calls`` against BFCL ``answers``; the category picks the rule."""
    if "parallel" in category:
        return parallel_function_checker_no_order(functions, calls, answers)
    if "multiple" in category:
        return multiple_function_checker(functions, calls, answers)
    if len(calls) != 1:
        return _fail("simple_function_checker:wrong_count", "Wrong number of functions.")
    return simple_function_checker(functions[0], calls[0], answers[0])


def find_description(functions: list[dict[str, Any]], name: str) -> dict[str, Any] | None:
    return next((f for f in functions if f["name"] == name), None)


def get_possible_answer_type(possible_answer: list[Any]) -> type | None:
    for answer in possible_answer:
        if answer != "":  # "" marks an optional parameter
            return type(answer)
    return None


def type_checker(param: str, value: Any, possible_answer: list[Any], expected_type_description: str,
                 expected_type_converted: type, nested_type_converted: type | None) -> tuple[Check, bool]:
    """Type verdict and whether the value is a "variable" (typed as in the answer, not the schema)."""
    if expected_type_converted is object:
        return OK, False
    is_variable = False
    # A variable name may stand in for a value: then the answer's type, not the schema's, applies.
    possible_answer_type = get_possible_answer_type(possible_answer)
    if possible_answer_type is not None and possible_answer_type != expected_type_converted:
        is_variable = True

    if type(value) == expected_type_converted:
        if nested_type_converted is None:
            return OK, is_variable
        for possible_answer_item in possible_answer:
            flag = True  # every item must match one possible answer's item type
            if type(possible_answer_item) == list:
                for value_item in value:
                    check, _ = type_checker(param, value_item, possible_answer_item, str(nested_type_converted),
                                            nested_type_converted, None)
                    if not check.valid:
                        flag = False
                        break
            if flag:
                return OK, is_variable
        nested_error = _fail(
            "type_error:nested",
            f"Nested type checking failed for parameter {param!r}. Expected outer type {expected_type_description} "
            f"with inner type {nested_type_converted}. Parameter value: {value!r}.")
    else:
        nested_error = None

    if possible_answer_type is not None and type(value) == possible_answer_type:
        return (nested_error or OK), True

    errors = list(nested_error.errors) if nested_error else []
    errors.append(f"Incorrect type for parameter {param!r}. Expected type {expected_type_description}, "
                  f"got {type(value).__name__}. Parameter value: {value!r}.")
    return Check(False, "type_error:simple", errors), False


def standardize_string(input_string: str) -> str:
    """Drop spaces and ``,./-_*^``, lowercase, single to double quotes: "April 1, 2024" == "april 1 2024"."""
    return re.sub(r"[ \,\.\/\-\_\*\^]", "", input_string).lower().replace("'", '"')


def string_checker(param: str, model_output: str, possible_answer: list[Any]) -> Check:
    allowed = [standardize_string(a) for a in possible_answer if type(a) == str]
    if standardize_string(model_output) not in allowed:
        return _fail("value_error:string", f"Invalid value for parameter {param!r}: {model_output!r}. "
                                           f"Expected one of {possible_answer}. Case insensitive.")
    return OK


def list_checker(param: str, model_output: list[Any], possible_answer: list[Any]) -> Check:
    output = [standardize_string(v) if type(v) == str else v for v in model_output]
    allowed = [[standardize_string(v) if type(v) == str else v for v in answer] for answer in possible_answer]
    if output not in allowed:
        return _fail("value_error:list/tuple",
                     f"Invalid value for parameter {param!r}: {model_output!r}. Expected one of {possible_answer}.")
    return OK


def dict_checker(param: str, model_output: dict[str, Any], possible_answers: list[Any]) -> Check:
    """One level of keys; nested dicts are compared as values (BFCL's data needs no more)."""
    result = Check(False, "dict_checker:unclear")
    for possible_answer in possible_answers:
        if possible_answer == "":
            continue
        result = OK
        for key, value in model_output.items():
            if key not in possible_answer:
                result = _fail("value_error:dict_key", f"Unexpected dict key parameter: '{key}'.")
                break
            standardized = standardize_string(value) if type(value) == str else value
            allowed = [standardize_string(a) if type(a) == str else a for a in possible_answer[key]]
            if standardized not in allowed:
                result = _fail("value_error:dict_value",
                               f"Invalid value for parameter {key!r}: {value!r}. Expected one of {allowed}.")
                break
        if result.valid:
            for key, value in possible_answer.items():
                if key not in model_output and "" not in value:
                    result = _fail("value_error:dict_key", f"Missing dict key parameter: '{key}'.")
                    break
        if result.valid:
            return OK
    return result


def list_dict_checker(param: str, model_output: list[Any], possible_answers: list[Any]) -> Check:
    """A list of dicts, in the answer's order."""
    result = Check(False, "list_dict_checker:unclear")
    for answer in possible_answers:
        if len(model_output) != len(answer):
            result = _fail("value_error:list_dict_count", "Wrong number of dictionaries in the list.")
            continue
        matched = True
        for output_item, answer_item in zip(model_output, answer):
            result = dict_checker(param, output_item, [answer_item])
            if not result.valid:
                matched = False
                break
        if matched:
            return OK
    return result


def simple_function_checker(func_description: dict[str, Any], model_output: Call, possible_answer: Answer) -> Check:
    possible = next(iter(possible_answer.values()))
    func_name = func_description["name"]
    param_details = func_description["parameters"]["properties"]
    required_params = func_description["parameters"].get("required", [])

    if func_name not in model_output:
        return _fail("simple_function_checker:wrong_func_name", f"Function name {func_name!r} not found in model output.")
    model_params = model_output[func_name]

    for param in required_params:
        if param not in model_params:
            return _fail("simple_function_checker:missing_required", f"Missing required parameter: {param!r}.")

    for param, value in model_params.items():
        if param not in param_details or param not in possible:
            return _fail("simple_function_checker:unexpected_param", f"Unexpected parameter: {param!r}.")
        expected_type_description = param_details[param]["type"]
        expected_type_converted = PYTHON_TYPE_MAPPING[expected_type_description]
        nested_type_converted = None
        if expected_type_description in PYTHON_NESTED_TYPE_CHECK_LIST:
            nested_type_converted = PYTHON_TYPE_MAPPING[param_details[param]["items"]["type"]]
        # JSON has no tuples; an int is an acceptable float, as Python would convert it.
        if expected_type_description == "float" and type(value) == int:
            value = float(value)

        type_check, is_variable = type_checker(param, value, possible[param], expected_type_description,
                                               expected_type_converted, nested_type_converted)
        if not type_check.valid:
            return type_check

        # A variable is compared as a plain value, not as a dict/list/string structure.
        if not is_variable:
            if expected_type_converted == dict:
                check = dict_checker(param, value, possible[param])
            elif expected_type_converted == list and nested_type_converted == dict:
                check = list_dict_checker(param, value, possible[param])
            elif type(value) == str and expected_type_converted in (str, object):
                check = string_checker(param, value, possible[param])
            elif expected_type_converted == list:
                check = list_checker(param, value, possible[param])
            else:
                check = None
            if check is not None:
                if not check.valid:
                    return check
                continue

        if value not in possible[param]:
            return _fail("value_error:others",
                         f"Invalid value for parameter {param!r}: {value!r}. Expected one of {possible[param]}.")

    for param in possible:
        if param not in model_params and "" not in possible[param]:
            return _fail("simple_function_checker:missing_optional",
                         f"Optional parameter {param!r} not provided and not marked as optional.")
    return OK


def parallel_function_checker_no_order(functions: list[dict[str, Any]], calls: list[Call],
                                       answers: list[Answer]) -> Check:
    """Every answer must match a distinct call, in any order."""
    if len(calls) != len(answers):
        return _fail("parallel_function_checker_no_order:wrong_count", "Wrong number of functions.")
    matched: set[int] = set()
    for i, answer in enumerate(answers):
        description = find_description(functions, next(iter(answer)))
        all_errors: list[Any] = []
        found = False
        for index, call in enumerate(calls):
            if index in matched:
                continue
            check = simple_function_checker(description, call, answer)
            if check.valid:
                matched.add(index)
                found = True
                break
            all_errors.append({f"Model Result Index {index}": {"sub_error": check.errors,
                                                               "sub_error_type": check.error_type}})
        if not found:
            considered = [j for j in range(len(calls)) if j not in matched]
            all_errors.insert(0, f"Could not find a matching function among index {considered} of model output "
                                 f"for index {i} of possible answers.")
            return Check(False, "parallel_function_checker_no_order:cannot_find_match", all_errors)
    return OK


def multiple_function_checker(functions: list[dict[str, Any]], calls: list[Call], answers: list[Answer]) -> Check:
    """One call, to the right one of several candidate functions."""
    if len(calls) != len(answers):
        return _fail("multiple_function_checker:wrong_count", "Wrong number of functions.")
    description = find_description(functions, next(iter(answers[0])))
    return simple_function_checker(description, calls[0], answers[0])
