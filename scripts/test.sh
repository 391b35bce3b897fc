#!/usr/bin/env bash
# The test command: sets up .venv (scripts/setup_env.sh), builds, runs the whole suite.
# Extra arguments go to pytest (e.g. scripts/test.sh -k autograd).
source "$(dirname "${BASH_SOURCE[0]}")/setup_env.sh"
cd "$ROOT"
step "running tests"
exec "$PY" -m pytest tests -q -rs -p no:cacheprovider "$@"
