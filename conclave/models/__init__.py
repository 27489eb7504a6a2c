"""Model backends: spec strings resolve to AutoGen ``ChatCompletionClient`` objects."""

from conclave.models.backends import parse_spec
from conclave.models.clients import client_name, default_spec, make_client, role_clients, role_spec
from conclave.models.spec import ModelSpec
from conclave.models.structured import StructuredOutputError, complete_json, complete_structured

__all__ = [
    "ModelSpec",
    "StructuredOutputError",
    "client_name",
    "complete_json",
    "complete_structured",
    "default_spec",
    "make_client",
    "parse_spec",
    "role_clients",
    "role_spec",
]
