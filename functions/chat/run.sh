#!/bin/bash
# Lambda Web Adapter entry point (Handler: run.sh, AWS_LAMBDA_EXEC_WRAPPER=/opt/bootstrap).
# The adapter waits until GET $AWS_LWA_READINESS_CHECK_PATH answers, then forwards each invocation to
# this server and streams the response back (AWS_LWA_INVOKE_MODE=response_stream).
# The layers are under /opt/python: a process started here is not the Lambda runtime, so it does not
# get that path by itself.
set -euo pipefail
HERE="${LAMBDA_TASK_ROOT:-$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)}"
export PYTHONPATH="${HERE}:/opt/python${LAMBDA_RUNTIME_DIR:+:${LAMBDA_RUNTIME_DIR}}${PYTHONPATH:+:${PYTHONPATH}}"
exec python3 -m uvicorn --host 127.0.0.1 --port "${AWS_LWA_PORT:-${PORT:-8080}}" \
    --app-dir "${HERE}" --no-server-header --no-proxy-headers --log-level warning app:app
