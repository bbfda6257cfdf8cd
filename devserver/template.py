"""Read `template.yaml` (AWS SAM / CloudFormation) so the local stack and the tests use the very same
routes and table definitions as the deployed stack.

CloudFormation's short-form tags (`!Ref X`, `!Sub "..."`, `!GetAtt A.B`, `!If [...]`, ...) are loaded
as the plain long form CloudFormation itself uses: `{"Ref": "X"}`, `{"Fn::Sub": "..."}`,
`{"Fn::GetAtt": ["A", "B"]}`, `{"Fn::If": [...]}`. Nothing is resolved or evaluated.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
TEMPLATE_PATH = ROOT / "template.yaml"

FUNCTION_TYPE = "AWS::Serverless::Function"
TABLE_TYPE = "AWS::DynamoDB::Table"


class _CfnLoader(yaml.SafeLoader):
    """SafeLoader that understands every CloudFormation intrinsic-function tag."""


def _construct_tag(loader: _CfnLoader, tag_suffix: str, node: yaml.Node) -> dict[str, Any]:
    name = "Ref" if tag_suffix == "Ref" else f"Fn::{tag_suffix}"
    if tag_suffix == "Condition":  # `!Condition X` is the long form `{"Condition": "X"}`
        name = "Condition"
    if isinstance(node, yaml.ScalarNode):
        value: Any = loader.construct_scalar(node)
        if tag_suffix == "GetAtt":  # `!GetAtt A.B.C` -> ["A", "B.C"] (attribute names may contain dots)
            resource, _, attribute = str(value).partition(".")
            value = [resource, attribute]
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)
    return {name: value}


_CfnLoader.add_multi_constructor("!", _construct_tag)


def load_template(path: str | Path = TEMPLATE_PATH) -> dict[str, Any]:
    """The template as a dict, with intrinsic functions in their long (JSON) form."""
    with open(path, encoding="utf-8") as fh:
        loaded = yaml.load(fh, Loader=_CfnLoader)  # a SafeLoader subclass: no arbitrary objects
    if not isinstance(loaded, dict) or "Resources" not in loaded:
        raise ValueError(f"{path}: not a CloudFormation template (no Resources)")
    return loaded


def resources_of_type(template: dict[str, Any], type_name: str) -> dict[str, dict[str, Any]]:
    """Logical id -> resource, for every resource of the given type, in template order."""
    return {
        logical_id: resource
        for logical_id, resource in template.get("Resources", {}).items()
        if isinstance(resource, dict) and resource.get("Type") == type_name
    }


def functions(template: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return resources_of_type(template, FUNCTION_TYPE)


def api_route_details(template: dict[str, Any]) -> list[dict[str, Any]]:
    """Every `Api` event of every function: method, path, function, streaming, auth, event name.

    `streaming` is True when the route uses API Gateway response streaming
    (`ResponseTransferMode: RESPONSE_STREAM`); `auth` is the method authorizer (e.g. "AWS_IAM") or None.
    """
    routes: list[dict[str, Any]] = []
    for logical_id, resource in functions(template).items():
        events = (resource.get("Properties") or {}).get("Events") or {}
        for event_name, event in events.items():
            if event.get("Type") != "Api":
                continue
            props = event.get("Properties") or {}
            routes.append(
                {
                    "method": str(props["Method"]).upper(),
                    "path": props["Path"],
                    "function": logical_id,
                    "event": event_name,
                    "streaming": props.get("ResponseTransferMode") == "RESPONSE_STREAM",
                    "auth": (props.get("Auth") or {}).get("Authorizer"),
                }
            )
    return routes


def api_routes(template: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(METHOD, path, function logical id) for every API route, e.g. ("POST", "/v1/chat/completions",
    "ChatFunction"). METHOD is upper case; "ANY" means every method. Paths use API Gateway syntax:
    `{name}` is one path segment, `{proxy+}` is the rest of the path."""
    return [(r["method"], r["path"], r["function"]) for r in api_route_details(template)]


def tables(template: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return resources_of_type(template, TABLE_TYPE)


def table_definitions(template: dict[str, Any]) -> list[dict[str, Any]]:
    """`create_table` keyword arguments for every DynamoDB table of the template.

    TableName is the logical id (the template lets CloudFormation name the real table; the functions
    read it from TABLE_NAME). Only the keys `create_table` takes are kept.
    """
    definitions = []
    for logical_id, resource in tables(template).items():
        props = resource.get("Properties") or {}
        billing_mode = props.get("BillingMode", "PROVISIONED")
        definition: dict[str, Any] = {
            "TableName": logical_id,
            "KeySchema": [dict(k) for k in props["KeySchema"]],
            "AttributeDefinitions": [dict(a) for a in props["AttributeDefinitions"]],
            "BillingMode": billing_mode,
        }
        if billing_mode == "PROVISIONED" and "ProvisionedThroughput" in props:
            definition["ProvisionedThroughput"] = _int_values(props["ProvisionedThroughput"])
        stream = props.get("StreamSpecification")
        if stream:  # the table's stream (devserver/event_sources.py feeds it to the functions)
            definition["StreamSpecification"] = {"StreamEnabled": True, "StreamViewType": stream["StreamViewType"]}
        for kind in ("GlobalSecondaryIndexes", "LocalSecondaryIndexes"):
            indexes = [_index_definition(ix, billing_mode) for ix in props.get(kind) or []]
            if indexes:
                definition[kind] = indexes
        definitions.append(definition)
    return definitions


def _index_definition(index: dict[str, Any], billing_mode: str) -> dict[str, Any]:
    out: dict[str, Any] = {
        "IndexName": index["IndexName"],
        "KeySchema": [dict(k) for k in index["KeySchema"]],
        "Projection": dict(index.get("Projection") or {"ProjectionType": "ALL"}),
    }
    if billing_mode == "PROVISIONED" and "ProvisionedThroughput" in index:
        out["ProvisionedThroughput"] = _int_values(index["ProvisionedThroughput"])
    return out


def _int_values(throughput: dict[str, Any]) -> dict[str, int]:
    return {k: int(v) for k, v in throughput.items()}


def ttl_attribute(table: dict[str, Any] | str, template: dict[str, Any] | None = None) -> str | None:
    """The TTL attribute name of a table, or None when TTL is not enabled.

    `table` is a table resource (`template["Resources"]["PaywallsTable"]`), its `Properties`, or a
    logical id together with `template`.
    """
    if isinstance(table, str):
        if template is None:
            raise ValueError("pass the template along with a logical id")
        table = template["Resources"][table]
    props = table.get("Properties", table) if "Type" in table else table
    spec = props.get("TimeToLiveSpecification") or {}
    if spec.get("Enabled") in (True, "true", "True") and spec.get("AttributeName"):
        return str(spec["AttributeName"])
    return None
