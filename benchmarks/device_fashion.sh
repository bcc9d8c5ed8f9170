#!/bin/bash
# The lent GPU's one command (docs/flows.md, "On a lent GPU"); it runs in the repository root:
#   bash benchmarks/device_fashion.sh [benchmarks/device_fashion.py's options]
# installs the carried wheels (.whl/, if any) into $SITE (default /tmp/site), then runs the plan of
# benchmarks/device_fashion.py into $OUT; everything printed is also in $OUT/log. PYTHON: default python3.
set -o pipefail
: "${OUT:?set OUT to the folder that comes back}"
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
cd "$(dirname "$0")/.." || exit 1
export PYTHONUNBUFFERED=1
PY=${PYTHON:-python3}
SITE=${SITE:-/tmp/site}
{
  echo "== $(date -u '+%F %T UTC') $(hostname): bash benchmarks/device_fashion.sh $*"
  if compgen -G ".whl/*.whl" > /dev/null; then
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE" .whl/*.whl \
      || { echo "== the wheels in .whl/ did not install"; exit 1; }
    export PYTHONPATH="$SITE${PYTHONPATH:+:$PYTHONPATH}"
    echo "== installed into $SITE: $(cd .whl && ls *.whl | tr '\n' ' ')"
  fi
  "$PY" benchmarks/device_fashion.py --out "$OUT" "$@"
} 2>&1 | tee "$OUT/log"
