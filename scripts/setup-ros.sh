#!/usr/bin/env bash
# Sets up ROS 2 Jazzy from the PyPI wheels for building and testing
# clip_depth_ros on a machine without a ROS 2 installation (Debian, x86_64).
#
#   scripts/setup-ros.sh [--force] [--skip-apt]
#   . .ros/env.sh
#
# Needs root (or sudo) for step 1 unless --skip-apt, and a Debian whose
# python3.11 packages exist (Debian 12): the wheels are built for CPython
# 3.11. Ubuntu 24.04 has Python 3.12: install ROS 2 Jazzy from its apt
# repository instead (docs/node.md, "With a ROS 2 Jazzy install").
#
# Steps (each is skipped when its outputs exist and its inputs did not change):
#   1. Debian packages: cmake, libclang-dev (bindgen for r2r), a C/C++
#      toolchain, Python 3.11 with venv, libpython3.11 and its headers.
#   2. .venv-ros/: a virtual environment with the pinned ROS 2 Jazzy wheels
#      (scripts/ros-requirements.txt, every version pinned by
#      scripts/ros-constraints.txt), pytest, numpy and Pillow; plus the
#      librmw_implementation.so symlink r2r links.
#   3. msg/clip_depth_msgs built with CMake and installed into .ros/install
#      (C, C++ and Python bindings).
#   4. .ros/env.sh: the environment to source before cargo, the node binary,
#      the Python test peers and pytest.
#
# --force     redo every step
# --skip-apt  do not check or install Debian packages
#
# Environment: CLIP_DEPTH_ROS_PYTHON (Python 3.11 interpreter for the venv,
# default /usr/bin/python3.11), CARGO_TARGET_DIR (where r2r's generated-message
# caches are cleared after a message change; default target/).
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh" setup-ros

FORCE=0
SKIP_APT=0
parse_flags "--force --skip-apt" "$@"

VENV="$ROOT/.venv-ros"
ROS_DIR="$ROOT/.ros"
PREFIX="$ROS_DIR/install"
BUILD_DIR="$ROS_DIR/build"
STAMP_DIR="$ROS_DIR/stamps"
ENV_FILE="$ROS_DIR/env.sh"
MSG_PKG_DIR="$ROOT/msg/clip_depth_msgs"
REQUIREMENTS="$ROOT/scripts/ros-requirements.txt"
CONSTRAINTS="$ROOT/scripts/ros-constraints.txt"
PYTHON="${CLIP_DEPTH_ROS_PYTHON:-/usr/bin/python3.11}"
PY_VER=3.11

# Message packages r2r generates Rust types for: what the node uses plus what
# r2r itself needs. Narrowing this keeps r2r's build short.
IDL_PACKAGE_FILTER_VALUE='std_msgs;sensor_msgs;builtin_interfaces;geometry_msgs;rcl_interfaces;action_msgs;unique_identifier_msgs;lifecycle_msgs;type_description_interfaces;service_msgs;diagnostic_msgs;clip_depth_msgs'

APT_PACKAGES=(cmake make gcc g++ libclang-dev python3.11 python3.11-venv libpython3.11 libpython3.11-dev)

START=$(date +%s)

# --- 1. Debian packages -------------------------------------------------------
if [ "$SKIP_APT" = 0 ]; then
  missing=()
  for pkg in "${APT_PACKAGES[@]}"; do
    status="$(dpkg-query -W -f='${db:Status-Status}' "$pkg" 2>/dev/null || true)"
    [ "$status" = installed ] || missing+=("$pkg")
  done
  if [ "${#missing[@]}" -gt 0 ]; then
    command -v apt-get >/dev/null 2>&1 || die "missing packages ${missing[*]} and no apt-get"
    log "installing Debian packages: ${missing[*]}"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  else
    log "Debian packages present"
  fi
fi

[ -x "$PYTHON" ] || die "Python 3.11 not found at $PYTHON (the ROS 2 Jazzy wheels are built for CPython 3.11; set CLIP_DEPTH_ROS_PYTHON)"
"$PYTHON" -c 'import sys; sys.exit(0 if sys.version_info[:2] == (3, 11) else 1)' \
  || die "$PYTHON is not CPython 3.11"

mkdir -p "$STAMP_DIR" "$BUILD_DIR" "$PREFIX"

# --- 2. virtual environment with the wheels -----------------------------------
PY_ID="$("$PYTHON" -c 'import sys; print(sys.executable, sys.version)')"
VENV_HASH="$( (printf '%s\n' "$PY_ID"; cat "$REQUIREMENTS" "$CONSTRAINTS") | sha)"
VENV_STAMP="$STAMP_DIR/venv.sha256"
if ! "$VENV/bin/python" -c 'import rclpy' >/dev/null 2>&1; then
  rm -f "$VENV_STAMP"
fi
if ensure_venv "$VENV" "$PYTHON" "$VENV_STAMP" "$VENV_HASH" "$REQUIREMENTS" "$CONSTRAINTS"; then
  rm -f "$STAMP_DIR/clip_depth_msgs.sha256"  # rebuild the messages against the new venv
fi

# Quirk: r2r links -lrmw_implementation; these wheels ship no such library and
# link rcl straight to Fast DDS.
if [ ! -e "$VENV/lib/librmw_implementation.so" ] || [ -L "$VENV/lib/librmw_implementation.so" ]; then
  ln -sfn librmw_fastrtps_cpp.so "$VENV/lib/librmw_implementation.so"
fi

SITE="$VENV/lib/python$PY_VER/site-packages"
LIBS_DIRS="$(find "$SITE" -maxdepth 1 -type d -name 'ros_*.libs' | LC_ALL=C sort | tr '\n' ':')"
LIBS_DIRS="${LIBS_DIRS%:}"
LIBPYTHON="$("$VENV/bin/python" -c 'import os, sysconfig as s; print(os.path.join(s.get_config_var("LIBDIR"), s.get_config_var("INSTSONAME")))')"
[ -f "$LIBPYTHON" ] || die "$LIBPYTHON not found (install libpython3.11)"

# --- 3. the interface package ---------------------------------------------------
MSG_HASH="$( (cd "$MSG_PKG_DIR" && find . -type f ! -name '*.pyc' -print0 | LC_ALL=C sort -z | xargs -0 sha256sum; \
  cat "$VENV_STAMP"; cmake --version | head -1) | sha)"
MSG_STAMP="$STAMP_DIR/clip_depth_msgs.sha256"
if stamp_matches "$MSG_STAMP" "$MSG_HASH" && [ -d "$PREFIX/share/clip_depth_msgs" ]; then
  log "clip_depth_msgs up to date ($PREFIX)"
else
  log "building clip_depth_msgs into $PREFIX"
  rm -rf "$BUILD_DIR/clip_depth_msgs" "$PREFIX"
  mkdir -p "$PREFIX"
  msg_log="$BUILD_DIR/clip_depth_msgs.log"
  if ! (
    export AMENT_PREFIX_PATH="$VENV" CMAKE_PREFIX_PATH="$VENV"
    export PATH="$VENV/bin:$PATH"
    export LD_LIBRARY_PATH="$VENV/lib:$LIBS_DIRS${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
    unset LD_PRELOAD
    cmake -S "$MSG_PKG_DIR" -B "$BUILD_DIR/clip_depth_msgs" \
      -DCMAKE_BUILD_TYPE=Release \
      -DCMAKE_INSTALL_PREFIX="$PREFIX" \
      -DPython3_EXECUTABLE="$VENV/bin/python" \
      -DBUILD_TESTING=OFF
    cmake --build "$BUILD_DIR/clip_depth_msgs" -j "$(nproc)"
    cmake --install "$BUILD_DIR/clip_depth_msgs"
  ) > "$msg_log" 2>&1; then
    tail -n 40 "$msg_log" >&2
    die "building clip_depth_msgs failed (full log: $msg_log)"
  fi
  printf '%s\n' "$MSG_HASH" > "$MSG_STAMP"
fi

# r2r caches the Rust code it generates (messages, rcl bindings) by the values
# of a few environment variables only, which stay the same here. When the
# message definitions or the ROS wheels change, drop those caches so that the
# next cargo build regenerates them.
R2R_HASH="$( (cd "$MSG_PKG_DIR" && find . -type f \( -name '*.msg' -o -name '*.srv' -o -name '*.action' -o -name '*.idl' \) -print0 \
  | LC_ALL=C sort -z | xargs -0 -r sha256sum; \
  grep '^ros-' "$CONSTRAINTS") | sha)"
R2R_STAMP="$STAMP_DIR/r2r-inputs.sha256"
if [ -f "$R2R_STAMP" ] && [ "$(cat "$R2R_STAMP")" != "$R2R_HASH" ] && command -v cargo >/dev/null 2>&1; then
  target_dir="${CARGO_TARGET_DIR:-$ROOT/target}"
  if compgen -G "$target_dir/*/build/r2r_msg_gen-*" >/dev/null || compgen -G "$target_dir/*/build/r2r-*" >/dev/null; then
    log "messages or ROS wheels changed: cargo clean -p r2r_msg_gen -p r2r_rcl -p r2r (in $target_dir)"
    (cd "$ROOT" && cargo clean -q -p r2r_msg_gen -p r2r_rcl -p r2r) || log "warning: cargo clean failed; run it by hand"
  fi
fi
printf '%s\n' "$R2R_HASH" > "$R2R_STAMP"

# --- 4. .ros/env.sh --------------------------------------------------------------
q() { shell_quote "$1"; }
tmp_env="$(mktemp "$ROS_DIR/env.sh.XXXXXX")"
{
  cat <<'EOF'
# Environment for building and running clip_depth_ros against ROS 2 Jazzy
# from the PyPI wheels. Written by scripts/setup-ros.sh; edits are overwritten.
# Source it from sh, bash or zsh:  . .ros/env.sh
#
# Set CLIP_DEPTH_ROS_NO_PRELOAD=1 before sourcing to leave LD_PRELOAD alone
# (then give the node libpython yourself, e.g. LD_PRELOAD=$CLIP_DEPTH_ROS_LIBPYTHON).
# ROS_DOMAIN_ID is left to the caller.

EOF
  print_exports CLIP_DEPTH_ROS_ROOT "$ROOT" CLIP_DEPTH_ROS_VENV "$VENV" CLIP_DEPTH_ROS_PREFIX "$PREFIX" \
    CLIP_DEPTH_ROS_LIBPYTHON "$LIBPYTHON"
  cat <<'EOF'

export ROS_DISTRO=jazzy
export ROS_VERSION=2
export ROS_PYTHON_VERSION=3
export RMW_IMPLEMENTATION=rmw_fastrtps_cpp
# Keep DDS discovery on this host unless the caller chose otherwise.
export ROS_AUTOMATIC_DISCOVERY_RANGE="${ROS_AUTOMATIC_DISCOVERY_RANGE:-LOCALHOST}"
# Transports sized for camera images (Fast DDS's defaults drop best-effort
# images larger than 512 KB between processes): see the file's comment.
if [ -z "${FASTRTPS_DEFAULT_PROFILES_FILE:-}" ]; then
EOF
  printf '  %s' "$(print_exports FASTRTPS_DEFAULT_PROFILES_FILE "$ROOT/config/fastdds_large_images.xml")"
  printf '\nfi\n\n# Set exactly (not appended): r2r caches its generated code by these values.\n'
  print_exports AMENT_PREFIX_PATH "$PREFIX:$VENV" CMAKE_PREFIX_PATH "$PREFIX:$VENV" \
    IDL_PACKAGE_FILTER "$IDL_PACKAGE_FILTER_VALUE"
  printf '\n'
} > "$tmp_env"
{
  print_path_helper
  printf "\n# Runtime libraries: the message prefix, the venv's lib/ and the wheels'\n"
  printf '# auditwheel folders, in this order (prepended in reverse).\n'
  old_ifs="$IFS"; IFS=':'
  # shellcheck disable=SC2206
  libs_array=($LIBS_DIRS)
  IFS="$old_ifs"
  for ((i=${#libs_array[@]}-1; i>=0; i--)); do
    printf '_clip_depth_path LD_LIBRARY_PATH prepend : %s\n' "$(q "${libs_array[$i]}")"
  done
  printf '_clip_depth_path LD_LIBRARY_PATH prepend : %s\n' "$(q "$VENV/lib")"
  printf '_clip_depth_path LD_LIBRARY_PATH prepend : %s\n' "$(q "$PREFIX/lib")"
  printf '\n# Python: the venv first on PATH, the generated clip_depth_msgs package on PYTHONPATH.\n'
  printf '_clip_depth_path PATH prepend : %s\n' "$(q "$VENV/bin")"
  printf '_clip_depth_path PYTHONPATH prepend : %s\n' "$(q "$PREFIX/lib/python$PY_VER/site-packages")"
  cat <<'EOF'

# librcl from the wheels needs the *__rosidl_generator_py libraries, which
# reference CPython symbols: a non-Python process (the Rust node) must have
# libpython loaded. The venv's python is Debian's statically linked
# interpreter, which is unaffected by this preload.
if [ -z "${CLIP_DEPTH_ROS_NO_PRELOAD:-}" ]; then
  _clip_depth_path LD_PRELOAD prepend ' ' "$CLIP_DEPTH_ROS_LIBPYTHON"
fi
unset -f _clip_depth_path
EOF
} >> "$tmp_env"
mv -f "$tmp_env" "$ENV_FILE"

log "wrote $ENV_FILE ($(( $(date +%s) - START )) s)"
log "next: . .ros/env.sh && cargo build --features ros --bin clip_depth_node"
