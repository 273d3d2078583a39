"""Which JSON Schema keywords hold subschemas, and what the grammar does with each keyword.

The table in ``hammer.server.grammar.schema``'s docstring is the prose form of these sets.
"""

from __future__ import annotations

# Keywords whose value is one subschema / a name → subschema map / a list of subschemas.
SUBSCHEMA = frozenset({
    "items", "additionalProperties", "not", "if", "then", "else", "contains", "propertyNames",
    "unevaluatedItems", "unevaluatedProperties", "additionalItems", "contentSchema",
})
SUBSCHEMA_MAP = frozenset({"properties", "patternProperties", "$defs", "definitions", "dependentSchemas"})
SUBSCHEMA_LIST = frozenset({"allOf", "anyOf", "oneOf", "prefixItems"})

# Enforced exactly by the grammar (or, for float bounds, left to post-validation).
ENFORCED = frozenset({
    "type", "enum", "const", "anyOf", "oneOf", "allOf",
    "properties", "required", "additionalProperties", "minProperties", "maxProperties",
    "items", "prefixItems", "minItems", "maxItems", "uniqueItems",
    "minLength", "maxLength", "pattern", "format",
    "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum",
    "$ref",  # resolved by inlining before anything else looks at the schema
})

# No effect on validation: dropped from the checked schema.
ANNOTATIONS = frozenset({
    "title", "description", "default", "examples", "$schema", "$id", "$comment", "$anchor",
    "$dynamicAnchor", "$vocabulary", "deprecated", "readOnly", "writeOnly",
    "contentMediaType", "contentEncoding", "contentSchema", "minContains", "maxContains",
    "$defs", "definitions",
})

# Refused, with the reason given to the client: accepting them would let the grammar
# produce output that the schema rejects.
REJECTED = {
    "not": "'not' cannot be enforced by a grammar",
    "if": "'if'/'then'/'else' cannot be enforced by a grammar",
    "then": "'if'/'then'/'else' cannot be enforced by a grammar",
    "else": "'if'/'then'/'else' cannot be enforced by a grammar",
    "dependentSchemas": "'dependentSchemas' is not supported",
    "dependentRequired": "'dependentRequired' is not supported",
    "dependencies": "'dependencies' (draft 7) is not supported",
    "patternProperties": "'patternProperties' is not supported",
    "propertyNames": "'propertyNames' is not supported",
    "unevaluatedProperties": "'unevaluatedProperties' is not supported",
    "unevaluatedItems": "'unevaluatedItems' is not supported",
    "contains": "'contains' is not supported",
    "additionalItems": "'additionalItems' (draft 7) is not supported; use 'prefixItems' and 'items'",
    "multipleOf": "'multipleOf' cannot be enforced by a grammar",
    "$dynamicRef": "'$dynamicRef' is not supported",
    "$recursiveRef": "'$recursiveRef' is not supported",
}

TYPES = ("null", "boolean", "object", "array", "number", "integer", "string")

# Formats the grammar writes exactly; any other format is an annotation (jsonschema does
# not assert formats unless asked to).
FORMATS = frozenset({"date", "time", "date-time", "uuid"})
