"""Print the CloudFormation that the SAM transform makes of template.yaml (JSON on stdout).

Runs with the SAM CLI's own interpreter (.venv-sam/bin/python), offline: local CodeUri/ContentUri
values are replaced by placeholder S3 locations exactly as `sam validate` does. Used by
tests/test_template.py to check what API Gateway will really get (streaming integrations, IAM auth).

usage: .venv-sam/bin/python tests/sam_translate.py [template.yaml]
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import boto3.session
from samcli.yamlhelper import yaml_parse
from samtranslator.parser import parser
from samtranslator.translator.translator import Translator

PLACEHOLDER_S3 = "s3://bucket/value"


def main() -> None:
    path = Path(sys.argv[1] if len(sys.argv) > 1 else Path(__file__).resolve().parent.parent / "template.yaml")
    template = yaml_parse(path.read_text(encoding="utf-8"))
    for resource in template.get("Resources", {}).values():
        props = resource.get("Properties") or {}
        if resource.get("Type") == "AWS::Serverless::Function" and "CodeUri" in props:
            props["CodeUri"] = PLACEHOLDER_S3
        if resource.get("Type") == "AWS::Serverless::LayerVersion" and "ContentUri" in props:
            props["ContentUri"] = PLACEHOLDER_S3
    # The transform only needs a region name for ARNs; no credentials, no network.
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    session = boto3.session.Session(region_name=os.environ["AWS_DEFAULT_REGION"])
    translator = Translator(managed_policy_map=None, sam_parser=parser.Parser(), boto_session=session)
    output = translator.translate(
        sam_template=template,
        parameter_values={},
        get_managed_policy_map=lambda: {},
    )
    json.dump(output, sys.stdout, indent=1, sort_keys=True, default=str)


if __name__ == "__main__":
    main()
