#!/usr/bin/env bash
# One entry point for everything that needs set-up; it creates .venv and installs busprop with
# its development extras on first use (and again whenever pyproject.toml changes).
#   ./dev.sh demo [--spotlight]   run `busprop demo`
#   ./dev.sh test [pytest args]   start RabbitMQ/Redis if down, then ruff, mypy and the test suite
#   ./dev.sh bench                run the benchmarks in bench/
set -euo pipefail
cd "$(dirname "$0")"

PYTHON=${PYTHON:-python3}
VENV=.venv

setup() {
  if [ ! -x "$VENV/bin/python" ]; then
    "$PYTHON" -m venv "$VENV"
  fi
  if [ ! -f "$VENV/.installed" ] || [ pyproject.toml -nt "$VENV/.installed" ]; then
    "$VENV/bin/python" -m pip install -q --upgrade pip
    "$VENV/bin/python" -m pip install -q -e '.[dev]'
    touch "$VENV/.installed"
  fi
}

port_open() { (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null; }

wait_port() {
  for _ in $(seq 1 60); do port_open "$1" "$2" && return 0; sleep 1; done
  return 1
}

ensure_services() {
  if ! port_open 127.0.0.1 6379 && command -v redis-server >/dev/null; then
    echo "dev.sh: starting Redis"
    redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no >/dev/null
    wait_port 127.0.0.1 6379 || echo "dev.sh: Redis did not start" >&2
  fi
  if ! port_open 127.0.0.1 5672 && command -v rabbitmq-server >/dev/null; then
    echo "dev.sh: starting RabbitMQ"
    rabbitmq-server -detached >/dev/null 2>&1 || true
    wait_port 127.0.0.1 5672 || echo "dev.sh: RabbitMQ did not start" >&2
  fi
}

command=${1:-}
[ $# -gt 0 ] && shift
case "$command" in
  demo)
    setup
    exec "$VENV/bin/busprop" demo "$@"
    ;;
  test)
    setup
    ensure_services
    "$VENV/bin/ruff" check busprop tests bench examples
    "$VENV/bin/ruff" format --check busprop tests bench examples
    "$VENV/bin/mypy"
    exec "$VENV/bin/python" -m pytest "$@"
    ;;
  bench)
    setup
    ensure_services
    for script in bench/bench_*.py; do "$VENV/bin/python" "$script" "$@"; done
    ;;
  *)
    echo "usage: ./dev.sh demo|test|bench [args]" >&2
    exit 2
    ;;
esac
