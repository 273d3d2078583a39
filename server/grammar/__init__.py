"""Any client JSON Schema → a GBNF grammar that cannot hurt llama.cpp, or ``SchemaRejected``.

Pure functions, no I/O. ``checked_schema`` checks and normalizes a schema (also for backends
that take JSON Schema directly, like vLLM/xgrammar); ``schema_gbnf``/``sequence_gbnf`` write
the grammar; ``check_pattern`` validates one ``pattern``; ``resolve_refs`` inlines one tool's
local ``$ref``s before it is nested into a larger schema.
"""

from hammer.server.grammar.gbnf import schema_gbnf, sequence_gbnf
from hammer.server.grammar.limits import SchemaLimits, SchemaRejected
from hammer.server.grammar.refs import resolve_refs
from hammer.server.grammar.regex import check_pattern
from hammer.server.grammar.schema import checked_resolved, checked_schema

__all__ = ["SchemaLimits", "SchemaRejected", "check_pattern", "checked_resolved", "checked_schema", "resolve_refs",
           "schema_gbnf", "sequence_gbnf"]
