#!/bin/bash
# The lent GPU's one command (docs/flows.md, "On a lent GPU"); it runs in the repository root:
#   bash benchmarks/device_fashion.sh [benchmarks/device_fashion.py's options]
# installs the carried wheels (.whl/, if any) into $SITE (default /tmp/site), then runs the plan of
# benchmarks/device_fashion.py into $OUT; everything printed is also in $OUT/log. PYTHON: default python3.
# Nothing outlives the call: on SIGTERM, SIGHUP or SIGINT, and on exit, the driver is sent SIGTERM (it
# ends its phases' process groups, then exits) and waited for; the exit status is the driver's.
: "${OUT:?set OUT to the folder that comes back}"
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
cd "$(dirname "$0")/.." || exit 1
export PYTHONUNBUFFERED=1
PY=${PYTHON:-python3}
SITE=${SITE:-/tmp/site}
exec > >(trap "" TERM HUP INT; exec tee "$OUT/log") 2>&1  # tee outlasts a signal to the group: the log keeps the cleanup
tee_pid=$!
driver=
stop() { [ -n "$driver" ] && kill -TERM "$driver" 2>/dev/null; }
finish() {
  stop
  [ -n "$driver" ] && while kill -0 "$driver" 2>/dev/null; do wait "$driver"; done
  exec >&- 2>&-  # tee sees the end of its input, writes the last of the log, exits
  wait "$tee_pid" 2>/dev/null
}
trap stop TERM HUP INT
trap finish EXIT
echo "== $(date -u '+%F %T UTC') $(hostname): bash benchmarks/device_fashion.sh $*"
if compgen -G ".whl/*.whl" > /dev/null; then
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE" .whl/*.whl \
    || { echo "== the wheels in .whl/ did not install"; exit 1; }
  export PYTHONPATH="$SITE${PYTHONPATH:+:$PYTHONPATH}"
  echo "== installed into $SITE: $(cd .whl && ls *.whl | tr '\n' ' ')"
fi
"$PY" benchmarks/device_fashion.py --out "$OUT" "$@" &
driver=$!
while :; do
  wait "$driver"
  rc=$?
  kill -0 "$driver" 2>/dev/null || break  # a trapped signal ends `wait` early: the driver is still stopping
done
exit "$rc"
