#!/usr/bin/env bash
# Tests of the Python feed reader (clients/python), for .ci/run and for people:
#   bash clients/python/run-tests.sh [pytest args...]
# Installs the package with its test extra into <repo>/.tmp/py-venv (created on first use;
# PYTHON picks the interpreter, default python3) and runs pytest on clients/python/tests.
# The live test needs a Kafka broker and dist/ built (npm run build): MMSSR_KAFKA_BROKERS
# names one (CI's); without it, the local broker (connectors/kafka/local-broker.sh) is used
# when it runs, else started for these tests and stopped after them. MMSSR_NO_BROKER=1 skips
# the live test instead. Exits with pytest's status.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
venv="$repo/.tmp/py-venv"
cd "$repo"

if [ ! -x "$venv/bin/python" ]; then
  mkdir -p "$repo/.tmp"
  "${PYTHON:-python3}" -m venv "$venv"
fi
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check "./clients/python[test]"

if [ -z "${MMSSR_KAFKA_BROKERS:-}" ] && [ "${MMSSR_NO_BROKER:-}" != "1" ]; then
  broker=connectors/kafka/local-broker.sh
  if ! MMSSR_KAFKA_BROKERS="$(bash "$broker" status 2>/dev/null)"; then
    trap 'bash "$broker" stop >/dev/null 2>&1 || true' EXIT
    MMSSR_KAFKA_BROKERS="$(bash "$broker" start)"
  fi
  export MMSSR_KAFKA_BROKERS
fi

# the Hugging Face tests build datasets from generators; nothing may reach the Hub
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1

status=0
"$venv/bin/python" -m pytest -q -p no:cacheprovider clients/python/tests "$@" || status=$?
exit "$status"
