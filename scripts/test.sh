#!/usr/bin/env bash
# The test command: sets up .venv (scripts/setup_env.sh), builds, runs the whole suite.
# Extra arguments go to pytest: options (scripts/test.sh -k autograd) filter the whole suite, paths
# (scripts/test.sh tests/tensorrt) run only those.
source "$(dirname "${BASH_SOURCE[0]}")/setup_env.sh"
cd "$ROOT"
step "running tests"
# No path here: without one, pytest runs pyproject.toml's testpaths (tests/), so a path argument
# narrows the run instead of adding to it.
exec "$PY" -m pytest -q -rs -p no:cacheprovider "$@"
