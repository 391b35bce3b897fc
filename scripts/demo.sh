#!/usr/bin/env bash
# The main job: sets up .venv (scripts/setup_env.sh), builds, runs the demo. Arguments go to the demo
# (python examples/demo.py --help).
source "$(dirname "${BASH_SOURCE[0]}")/setup_env.sh"
cd "$ROOT"
step "running examples/demo.py"
exec "$PY" examples/demo.py "$@"
