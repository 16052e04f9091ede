#!/usr/bin/env bash
# Runs a command in the ROS 2 environment that scripts/setup-ros.sh writes to
# .ros/env.sh, e.g.
#
#   scripts/ros-env.sh cargo build --features ros --bin clip_depth_node
#   scripts/ros-env.sh python -m pytest tests/ros
#
# Without a command it prints the path of the environment file, so that
# `. "$(scripts/ros-env.sh)"` sources it into the current shell.
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh" ros-env

ENV_FILE="$ROOT/.ros/env.sh"
[ -f "$ENV_FILE" ] || die "$ENV_FILE not found; run scripts/setup-ros.sh first"
if [ "$#" -eq 0 ]; then
  printf '%s\n' "$ENV_FILE"
  exit 0
fi
# shellcheck source=/dev/null
. "$ENV_FILE"
exec "$@"
