#!/usr/bin/env bash
# One entry point for everything that needs set-up; it creates .venv and installs busprop with
# its development extras on first use (and again whenever pyproject.toml changes).
#   ./dev.sh demo [--spotlight]   run `busprop demo`
#   ./dev.sh test [pytest args]   start RabbitMQ/Redis if down, then ruff, mypy, the docs build and the test suite
#   ./dev.sh bench [args]         every performance goal in one table (bench/goals.py; --json PATH)
#   ./dev.sh bench --all          each benchmark script in bench/ with its own tables
#   ./dev.sh bench --profile      where each microsecond goes, per adapter (bench/attribution.py)
#   ./dev.sh bench --instructions instructions per message on the hottest paths (callgrind; bench/instructions.py)
#   ./dev.sh matrix [pytest args] the declared version range (noxfile.py); `test` runs it beside pytest under CI=true
#   ./dev.sh proof [--quick]      bad input, load and memory at docs/proof.md's sizes (hours), one table
#   ./dev.sh mutate [mutant ...]  mutation-test the core modules against the fast tests, print the score
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

# Real peers the interoperability tests run: Sentry's Node SDK (tests/node) and headless Chromium.
ensure_test_peers() {
  if command -v npm >/dev/null; then
    if [ ! -d tests/node/node_modules ] || [ tests/node/package.json -nt tests/node/node_modules ]; then
      (cd tests/node && npm install --no-audit --no-fund --silent) && touch tests/node/node_modules
    fi
  fi
  if ! command -v chromium >/dev/null && command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
    echo "dev.sh: installing Debian's chromium for the browser tests"
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
      || echo "dev.sh: chromium could not be installed" >&2
  fi
}

# The supported versions (noxfile.py): sentry-sdk at its floor and latest, the client libraries at
# their minimums and latest, each in its own venv under .nox/; arguments go to pytest.
run_matrix() {
  "$VENV/bin/nox" -- "$@"
}

# Under CI the matrix runs beside the suite, in its own process group, its output kept in a log
# until it ends: the suite waits on brokers and subprocesses, and leaves most of two cores idle.
# Whatever ends the script first (a failing check, pytest) stops the matrix with it.
start_matrix_beside() {
  MATRIX_LOG=$(mktemp "${TMPDIR:-/tmp}/busprop-matrix.XXXXXX")
  setsid "$VENV/bin/nox" >"$MATRIX_LOG" 2>&1 &
  MATRIX_PID=$!
  trap stop_matrix EXIT
  echo "dev.sh: the version matrix (noxfile.py) runs beside the suite; its output follows the suite's"
}

stop_matrix() {
  kill -- "-$MATRIX_PID" 2>/dev/null || true  # set -e holds in a trap too
  rm -f "$MATRIX_LOG"
}

finish_matrix() {
  local status=0
  wait "$MATRIX_PID" || status=$?
  trap - EXIT
  echo "dev.sh: the version matrix (noxfile.py):"
  cat "$MATRIX_LOG"
  rm -f "$MATRIX_LOG"
  return "$status"
}

# mutmut's verdict on every mutant it knows: its tally by status, then the score.
mutation_score() {
  "$VENV/bin/mutmut" results --all true | awk -F': ' '
    NF == 2 { status[$2]++ }
    END {
      for (s in status) { printf "  %-12s %d\n", s, status[s]; total += status[s] }
      run = total - status["not checked"]; killed = status["killed"] + status["timeout"]
      printf "dev.sh: mutation score %d / %d killed (%.1f%%)", killed, run, run ? 100 * killed / run : 0
      if (status["not checked"]) printf ", %d not run", status["not checked"]
      printf "\n"
    }'
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
    ensure_test_peers
    ci=false
    case "${CI:-}" in 1 | true | yes) ci=true && start_matrix_beside ;; esac
    "$VENV/bin/ruff" check .
    "$VENV/bin/ruff" format --check .
    "$VENV/bin/mypy"
    NO_MKDOCS_2_WARNING=1 "$VENV/bin/mkdocs" build --strict --quiet --site-dir site  # docs/: a broken link fails
    "$VENV/bin/python" -m pytest "$@"  # set -e: a failure ends the script with pytest's status
    if [ "$ci" = true ]; then finish_matrix; fi
    ;;
  matrix)
    setup
    ensure_services
    run_matrix "$@"
    ;;
  bench)
    setup
    ensure_services
    case "${1:-}" in
      --all)
        shift
        for script in bench/bench_*.py; do "$VENV/bin/python" "$script" "$@"; done
        ;;
      --profile) shift && exec "$VENV/bin/python" bench/attribution.py "$@" ;;
      --instructions) shift && exec "$VENV/bin/python" bench/instructions.py "$@" ;;
      *) exec "$VENV/bin/python" bench/goals.py "$@" ;;
    esac
    ;;
  proof)
    setup
    ensure_services
    exec "$VENV/bin/python" bench/proof.py "$@"
    ;;
  mutate)
    # Modules, tests and options are in pyproject.toml's [tool.mutmut]; about an hour on two cores,
    # so not part of CI. A full run starts from a fresh copy: mutmut copies the files it does not
    # mutate only once, so an old mutants/ would test old code. Naming mutants re-runs just those
    # (after adding a test that should kill them) in the existing copy.
    setup
    [ $# -eq 0 ] && rm -rf mutants
    BUSPROP_HYPOTHESIS_EXAMPLES=${BUSPROP_HYPOTHESIS_EXAMPLES:-20} \
      "$VENV/bin/mutmut" run --max-children "${MUTMUT_CHILDREN:-2}" "$@"
    "$VENV/bin/mutmut" results
    mutation_score
    ;;
  *)
    echo "usage: ./dev.sh demo|test|bench|proof|matrix|mutate [args]" >&2
    exit 2
    ;;
esac
