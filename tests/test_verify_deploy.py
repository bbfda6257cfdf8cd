"""`make verify-deploy` (ops/verify_deploy.py): its logic run against the local stack as if it were the
deployed one. With the stack's outputs read from CloudFormation (moto), it creates the throwaway
paywall, deposits, chats through the OpenAI SDK (streamed and not), checks the charges against the
ledger and cleans up; when something is wrong it fails, and still cleans up."""

from __future__ import annotations

from typing import Any

import boto3
import pytest
from moto import mock_aws

from ops import verify_deploy
from tests.conftest import LocalStack

STACK_TEMPLATE = """
Resources:
  Nothing:
    Type: AWS::SNS::Topic
Outputs:
  AdminUrl:
    Value: {admin_url}
  OpenAIBaseUrl:
    Value: {base_url}
"""


def _args(stack: LocalStack, provider_url: str) -> list[str]:
    return [
        "--admin-token",
        stack.config["admin_token"],
        "--provider-kind",
        "openai-compatible",
        "--provider-base-url",
        provider_url,
        "--model",
        "demo/echo",
    ]


def _paywall(stack: LocalStack, paywall_id: str) -> dict[str, Any]:
    with stack.admin() as admin:
        return admin.get(f"/admin/paywalls/{paywall_id}").raise_for_status().json()


def test_verify_deploy_passes_on_a_healthy_stack_and_cleans_up(
    stack: LocalStack, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("PAYWALLS_PROVIDER_API_KEY", "demo-provider-key")
    with mock_aws():
        boto3.client("cloudformation", region_name="us-east-1").create_stack(
            StackName="paywalls-verify",
            TemplateBody=STACK_TEMPLATE.format(admin_url=f"{stack.url}/admin", base_url=f"{stack.url}/v1"),
        )
        code = verify_deploy.main(
            ["--stack", "paywalls-verify", "--region", "us-east-1", *_args(stack, f"{stack.url}/_demo/v1")]
        )
    out = capsys.readouterr()
    assert code == 0, out.err
    assert "streamed chat answered" in out.out and "exactly their usage" in out.out
    paywall_id = next(line.split()[-1] for line in out.out.splitlines() if "created paywall" in line)
    paywall = _paywall(stack, paywall_id)
    assert paywall["name"].startswith("verify-deploy (done")
    with stack.admin() as admin:
        [key] = admin.get(f"/admin/paywalls/{paywall_id}/keys").json()["data"]
        users = admin.get(f"/admin/paywalls/{paywall_id}/users", params={"environment": "test"}).json()["data"]
    assert key["revoked"] is True
    assert [int(u["balance"]) for u in users] == [0]


def test_verify_deploy_fails_loudly_and_still_cleans_up(
    stack: LocalStack, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A provider the deployment cannot reach: the chat is a 502, the check fails, and the key is
    revoked and the deposit debited anyway."""
    monkeypatch.setenv("PAYWALLS_PROVIDER_API_KEY", "demo-provider-key")
    args = [
        "--admin-url",
        f"{stack.url}/admin",
        "--openai-base-url",
        f"{stack.url}/v1",
        *_args(stack, "http://127.0.0.1:9/v1"),
    ]
    assert verify_deploy.main(args) == 1
    out = capsys.readouterr()
    assert "FAILED: InternalServerError" in out.err and "revoked key" in out.out
    paywall_id = next(line.split()[-1] for line in out.out.splitlines() if "created paywall" in line)
    with stack.admin() as admin:
        [key] = admin.get(f"/admin/paywalls/{paywall_id}/keys").json()["data"]
        users = admin.get(f"/admin/paywalls/{paywall_id}/users", params={"environment": "test"}).json()["data"]
    assert key["revoked"] is True and [int(u["balance"]) for u in users] == [0]


def test_verify_deploy_needs_a_provider_key_and_a_target(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("PAYWALLS_PROVIDER_API_KEY", raising=False)
    assert verify_deploy.main(["--stack", "x"]) == 1
    assert "PAYWALLS_PROVIDER_API_KEY" in capsys.readouterr().err
    monkeypatch.setenv("PAYWALLS_PROVIDER_API_KEY", "k")
    assert verify_deploy.main([]) == 1
    assert "give --stack" in capsys.readouterr().err
    with mock_aws():
        boto3.client("cloudformation", region_name="us-east-1").create_stack(
            StackName="not-paywalls",
            TemplateBody="Resources:\n  N:\n    Type: AWS::SNS::Topic\n",
        )
        assert verify_deploy.main(["--stack", "not-paywalls", "--region", "us-east-1"]) == 1
    assert "has no output(s) AdminUrl, OpenAIBaseUrl" in capsys.readouterr().err
