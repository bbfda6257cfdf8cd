"""Configuration is read once, in one place: `paywalls.infra.config` is the only module of the package and the
function apps that reads the environment, and its settings parse every value the code used to read."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from paywalls.infra import config
from paywalls.infra.config import settings

ROOT = Path(__file__).resolve().parent.parent
SCANNED = [ROOT / "shared" / "paywalls", ROOT / "functions"]
ALLOWED = {ROOT / "shared" / "paywalls" / "infra" / "config.py"}
_ENV_NAMES = {"environ", "environb", "getenv", "getenvb", "putenv", "unsetenv"}


def environment_reads(source: str) -> list[int]:
    """Lines that touch the process environment: `os.environ`, `os.getenv(...)` (also through an alias
    of `os`), or `from os import environ / getenv`."""
    tree = ast.parse(source)
    os_names = {"os"}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            os_names |= {alias.asname for alias in node.names if alias.name == "os" and alias.asname}
    lines = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module == "os":
            if any(alias.name in _ENV_NAMES for alias in node.names):
                lines.append(node.lineno)
        elif (
            isinstance(node, ast.Attribute)
            and node.attr in _ENV_NAMES
            and isinstance(node.value, ast.Name)
            and node.value.id in os_names
        ):
            lines.append(node.lineno)
    return lines


def test_no_environment_read_outside_config() -> None:
    offenders = {
        str(path.relative_to(ROOT)): lines
        for base in SCANNED
        for path in sorted(base.rglob("*.py"))
        if path not in ALLOWED and (lines := environment_reads(path.read_text()))
    }
    assert offenders == {}, "add a field to paywalls.infra.config.Settings and read it through settings()"


@pytest.mark.parametrize(
    "source",
    [
        "import os\nx = os.environ.get('A')\n",
        "import os\nx = os.environ['A']\n",
        "import os\nx = os.getenv('A')\n",
        "import os as system\nx = system.environ\n",
        "from os import environ\n",
        "from os import getenv as g\n",
    ],
)
def test_the_scan_sees_every_way_of_reading_the_environment(source: str) -> None:
    assert environment_reads(source)


def test_the_scan_ignores_other_uses_of_os() -> None:
    assert environment_reads("import os\nfrom pathlib import Path\nx = os.path.join('a', 'b')\n") == []


def test_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (
        "PAYWALLS_CACHE_TTL_S",
        "PAYWALLS_SECRET_MISS_TTL_S",
        "STRIPE_API_BASE",
        "EMAIL_FROM",
        "DEFAULT_SPENDING_CAP",
        "PAYWALLS_DEFAULT_MAX_COMPLETION_TOKENS",
        "PAYWALLS_PROVIDER_CONNECT_TIMEOUT_S",
        "PAYWALLS_PROVIDER_READ_TIMEOUT_S",
        "PAYWALLS_STREAM_DRAIN_TIMEOUT_S",
        "PAYWALLS_STREAM_MAX_S",
        "AWS_LAMBDA_FUNCTION_NAME",
        "POWERTOOLS_SERVICE_NAME",
        "POWERTOOLS_LOG_LEVEL",
    ):
        monkeypatch.delenv(name, raising=False)
    got = settings()
    assert (got.cache_ttl_s, got.secret_miss_ttl_s) == (30.0, 30.0)
    assert (got.stripe_api_base, got.email_from, got.default_spending_cap) == (None, "", "")
    assert got.default_max_completion_tokens == 4096
    assert (got.provider_connect_timeout_s, got.provider_read_timeout_s) == (5.0, 120.0)
    assert (got.stream_drain_timeout_s, got.stream_max_s) == (60.0, 870.0)
    assert (got.in_lambda, got.service_name, got.log_level) == (False, "paywalls", "INFO")


def test_values_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PAYWALLS_CACHE_TTL_S", "5")
    monkeypatch.delenv("PAYWALLS_SECRET_MISS_TTL_S", raising=False)
    monkeypatch.setenv("EMAIL_FROM", "  wallet@example.com ")
    monkeypatch.setenv("PAYWALLS_STREAM_MAX_S", "12.5")
    monkeypatch.setenv("AWS_LAMBDA_FUNCTION_NAME", "chat")
    got = settings()
    # The miss TTL follows the cache TTL unless set itself.
    assert (got.cache_ttl_s, got.secret_miss_ttl_s) == (5.0, 5.0)
    assert got.email_from == "wallet@example.com" and got.stream_max_s == 12.5 and got.in_lambda
    monkeypatch.setenv("PAYWALLS_SECRET_MISS_TTL_S", "-3")
    assert settings().secret_miss_ttl_s == 0.0
    monkeypatch.setenv("PAYWALLS_SECRET_MISS_TTL_S", "soon")
    assert settings().secret_miss_ttl_s == 30.0


@pytest.mark.parametrize("name", ["PAYWALLS_CACHE_TTL_S", "PAYWALLS_PROVIDER_READ_TIMEOUT_S", "PAYWALLS_STREAM_MAX_S"])
def test_a_duration_that_is_not_a_number_fails_naming_it(monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    monkeypatch.setenv(name, "half a minute")
    with pytest.raises(ValueError, match=name):
        settings()


def test_settings_are_read_once_and_the_tests_monkeypatch_refreshes_them(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    first = settings()
    assert settings() is first  # cached: the environment is read once per process
    saved = os.environ.get("EMAIL_FROM")
    os.environ["EMAIL_FROM"] = "direct@example.com"  # a change behind the cache's back is not seen
    try:
        assert settings().email_from == first.email_from
    finally:
        os.environ.pop("EMAIL_FROM")
        if saved is not None:
            os.environ["EMAIL_FROM"] = saved
    monkeypatch.setenv("EMAIL_FROM", "patched@example.com")  # the conftest fixture drops the cache
    assert settings().email_from == "patched@example.com"


def test_the_admin_token_is_not_in_the_settings_repr(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ADMIN_TOKEN", "adm_secret_value")
    assert settings().admin_token == "adm_secret_value"
    assert "adm_secret_value" not in repr(settings())


def test_cli_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PAYWALLS_ADMIN_URL", "https://admin.example.com")
    monkeypatch.setenv("PAYWALLS_STRIPE_SECRET_KEY", "sk_test_x")
    monkeypatch.delenv("PAYWALLS_ADMIN_TOKEN", raising=False)
    got = config.cli_settings()
    assert (got.admin_url, got.admin_token, got.stripe_secret_key) == ("https://admin.example.com", None, "sk_test_x")
    assert "sk_test_x" not in repr(got)
