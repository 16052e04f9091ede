# Shell helpers shared by the scripts in this folder. Source it first thing:
#
#   . "$(dirname "${BASH_SOURCE[0]}")/lib.sh" <name>
#
# <name> prefixes every message (log, die). Sets ROOT to the repository.
# shellcheck shell=bash

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
LIB_NAME="${1:-$(basename "$0" .sh)}"

log() { printf '%s: %s\n' "$LIB_NAME" "$*" >&2; }
die() { printf '%s: error: %s\n' "$LIB_NAME" "$*" >&2; exit 1; }

# The comment block after the shebang, for -h/--help.
usage() { awk 'NR > 1 && !/^#/ { exit } NR > 1' "$0" | sed 's/^# \{0,1\}//'; }

# parse_flags "--force --skip-apt" "$@": each allowed flag sets the variable
# of its name (--skip-apt: SKIP_APT=1); -h/--help prints the usage; anything
# else ends the script with exit code 2.
parse_flags() {
  local allowed="$1" arg
  shift
  for arg in "$@"; do
    case "$arg" in
      -h|--help) usage; exit 0 ;;
    esac
    case " $allowed " in
      *" $arg "*) printf -v "$(printf '%s' "${arg#--}" | tr 'a-z-' 'A-Z_')" 1 ;;
      *) printf '%s: unknown argument: %s\n' "$LIB_NAME" "$arg" >&2; exit 2 ;;
    esac
  done
}

sha() { sha256sum | cut -d' ' -f1; }

# stamp_matches FILE VALUE: the step that wrote FILE ran with VALUE (and no --force).
stamp_matches() { [ "${FORCE:-0}" = 0 ] && [ -f "$1" ] && [ "$(cat "$1")" = "$2" ]; }

# A single-quoted shell word.
shell_quote() { printf "'%s'" "$(printf '%s' "$1" | sed "s/'/'\\\\''/g")"; }

# print_exports NAME VALUE [NAME VALUE ...]: `export NAME='VALUE'` lines for
# a generated env.sh.
print_exports() {
  while [ "$#" -ge 2 ]; do
    printf 'export %s=%s\n' "$1" "$(shell_quote "$2")"
    shift 2
  done
}

as_root() {
  if [ "$(id -u)" = 0 ]; then
    "$@"
  elif command -v sudo >/dev/null 2>&1; then
    sudo "$@"
  else
    die "need root (or sudo) to run: $*"
  fi
}

# ensure_venv VENV PYTHON STAMP HASH REQUIREMENTS [CONSTRAINTS]: a virtual
# environment with the pinned requirements, rebuilt only when HASH differs
# from STAMP's; kept (and updated) when it was made by the same PYTHON.
# Returns 1 when nothing had to be done. (Every failure dies explicitly:
# `set -e` does not apply inside a function whose status is tested.)
ensure_venv() {
  local venv="$1" python="$2" stamp="$3" hash="$4" req="$5" con="${6:-}" py_id
  if stamp_matches "$stamp" "$hash" && [ -x "$venv/bin/python" ]; then
    log "venv up to date ($venv)"
    return 1
  fi
  py_id="$("$python" -c 'import sys; print(sys.executable, sys.version)')" || die "cannot run $python"
  if [ -x "$venv/bin/python" ] && [ "${FORCE:-0}" = 0 ] \
    && [ "$("$venv/bin/python" -c 'import sys; print(sys._base_executable, sys.version)' 2>/dev/null)" = "$py_id" ]; then
    log "updating venv $venv"
  else
    log "creating venv $venv"
    rm -rf "$venv"
    "$python" -m venv "$venv" || die "cannot create the virtual environment $venv"
  fi
  "$venv/bin/python" -m pip install --no-input --disable-pip-version-check -q -r "$req" ${con:+-c "$con"} \
    || die "installing $req into $venv failed"
  printf '%s\n' "$hash" > "$stamp" || die "cannot write $stamp"
}

# The shell function the generated env.sh files use to edit path lists:
#   _clip_depth_path VAR prepend|append SEPARATOR ENTRY   (unless present)
# Written into the file; the file ends with `unset -f _clip_depth_path`.
print_path_helper() {
  cat <<'SH'
_clip_depth_path() {
  eval "_clip_depth_cur=\${$1:-}"
  case "$3$_clip_depth_cur$3" in
    *"$3$4$3"*) ;;
    *) if [ -z "$_clip_depth_cur" ]; then
         eval "export $1=\"\$4\""
       elif [ "$2" = prepend ]; then
         eval "export $1=\"\$4\$3\$_clip_depth_cur\""
       else
         eval "export $1=\"\$_clip_depth_cur\$3\$4\""
       fi ;;
  esac
  unset _clip_depth_cur
}
SH
}
