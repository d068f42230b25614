# Sourced by scripts/run and scripts/test: make a fresh Debian machine ready.
#   BOOTSTRAP_DEV=1      also install the dev dependencies (tests, linters)
#   BOOTSTRAP_APT="..."  Debian packages this entry point needs (installed when running as root)
set -euo pipefail

ensure_uv() {
  if command -v uv >/dev/null 2>&1; then return; fi
  export PATH="$HOME/.local/bin:$PATH"
  if command -v uv >/dev/null 2>&1; then return; fi
  echo "==> 安装 uv（Python 包管理器）"
  python3 -m pip install --quiet --user uv 2>/dev/null || python3 -m pip install --quiet uv
  hash -r
}

ensure_apt() {
  local missing=()
  for pkg in "$@"; do
    dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  if [ "$(id -u)" != "0" ]; then
    echo "!! 缺少系统软件包：${missing[*]}；请以 root 运行，或先执行：sudo apt-get install -y ${missing[*]}" >&2
    return 0
  fi
  echo "==> 安装系统软件包：${missing[*]}"
  DEBIAN_FRONTEND=noninteractive apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# PYTHONDONTWRITEBYTECODE may be set on the machine: compile at install time so imports stay fast.
ensure_uv
# shellcheck disable=SC2086
ensure_apt ${BOOTSTRAP_APT:-}
if [ "${BOOTSTRAP_DEV:-0}" = "1" ]; then
  uv sync --frozen --quiet --compile-bytecode
else
  uv sync --frozen --quiet --no-dev --compile-bytecode
fi
