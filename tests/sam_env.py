"""Print, per function, the environment `sam local invoke --env-vars <file>` gives its container
(JSON on stdout), computed by the SAM CLI's own code: the template's variables (Globals merged,
parameters and pseudo parameters resolved as SAM resolves them), overridden by the env-vars file,
plus the AWS_* variables SAM adds. A name in the file that the template does not declare is ignored
by SAM; this script lists such names too, so a test can fail on them.

Runs with the SAM CLI's interpreter (.venv-sam/bin/python), offline, without Docker. The shell's
environment is cleared first: SAM copies a declared variable's value from the shell, which must not
leak into the result.

usage: .venv-sam/bin/python tests/sam_env.py template.yaml env.json
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path


def main() -> None:
    template, env_file = Path(sys.argv[1]).resolve(), Path(sys.argv[2]).resolve()
    keep = {k: os.environ[k] for k in ("PATH", "HOME") if k in os.environ}
    os.environ.clear()
    os.environ.update(keep)
    os.environ.update({"SAM_CLI_TELEMETRY": "0", "AWS_DEFAULT_REGION": "us-east-1"})

    from samcli.commands.local.lib.local_lambda import LocalLambdaRunner
    from samcli.lib.providers.sam_function_provider import SamFunctionProvider
    from samcli.lib.providers.sam_stack_provider import SamLocalStackProvider

    stacks, _ = SamLocalStackProvider.get_stacks(str(template))
    provider = SamFunctionProvider(stacks, use_raw_codeuri=True, ignore_code_extraction_warnings=True)
    values = json.loads(env_file.read_text())
    runner = LocalLambdaRunner(
        local_runtime=None,  # type: ignore[arg-type]  (only the environment is computed)
        function_provider=provider,
        cwd=str(template.parent),
        real_path=str(template.parent),
        aws_region="us-east-1",
        env_vars_values=values,
    )
    result: dict[str, object] = {}
    for function in provider.get_all():
        declared = set(((function.environment or {}).get("Variables") or {}).keys())
        given = set(values.get("Parameters", {})) | set(values.get(function.name, {}))
        result[function.name] = {
            "environment": runner._make_env_vars(function).resolve(),
            "ignored": sorted(given - declared),
            "handler": function.handler,
            "codeuri": function.codeuri,
        }
    json.dump(result, sys.stdout, indent=1, sort_keys=True)


if __name__ == "__main__":
    main()
