#!/usr/bin/env bash
# An MLflow tracking server with a PostgreSQL backend, so that several machines log into one store.
#
#   scripts/mlflow-server.sh start DIR [PORT] [HOST]   # start PostgreSQL + mlflow server, data in DIR
#   scripts/mlflow-server.sh stop DIR                  # stop both
#
# DIR holds the database cluster (DIR/pg), the artifact root (DIR/artifacts, served by the
# server: clients upload and download through it) and the logs. PostgreSQL listens on
# 127.0.0.1:PORT+1 only; the MLflow server on HOST:PORT (default 127.0.0.1:5000; give the
# machine's address, e.g. 0.0.0.0, for other machines, behind your firewall: it has no login).
# Clients set params `tracking.uri: http://HOST:PORT` (or env CEPHALO_TRACKING_URI).
# Run as root, PostgreSQL runs as the user `postgres` (or $PG_USER). Needs Debian's `postgresql`
# package and psycopg2 in the Python that runs mlflow ($PYTHON, default .venv/bin/python).
set -euo pipefail
cmd=${1:-}; dir=${2:-}
[[ "$cmd" == start || "$cmd" == stop ]] && [[ -n "$dir" ]] || { sed -n '2,14p' "$0" >&2; exit 2; }
repo=$(cd "$(dirname "$0")/.." && pwd)
mkdir -p "$dir"; dir=$(cd "$dir" && pwd)
port=${3:-5000}; host=${4:-127.0.0.1}
pg_port=$((port + 1))
python=${PYTHON:-$repo/.venv/bin/python}
[[ -x "$python" ]] || python=$(command -v python3)
pg_bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
[[ -n "$pg_bin" ]] || { echo "mlflow-server: PostgreSQL not found (apt-get install postgresql)" >&2; exit 1; }
as_pg=()
if [[ $(id -u) == 0 ]]; then as_pg=(runuser -u "${PG_USER:-postgres}" --); fi

if [[ "$cmd" == stop ]]; then
    if [[ -f "$dir/mlflow.pid" ]]; then
        pid=$(cat "$dir/mlflow.pid")
        kill -- -"$pid" 2>/dev/null || kill "$pid" 2>/dev/null || true
        rm -f "$dir/mlflow.pid"
    fi
    [[ -d "$dir/pg" ]] && "${as_pg[@]}" "$pg_bin/pg_ctl" -D "$dir/pg" -m fast -w stop >/dev/null 2>&1 || true
    echo "mlflow-server: stopped ($dir)"
    exit 0
fi

mkdir -p "$dir/pg-socket" "$dir/artifacts"
if [[ ${#as_pg[@]} -gt 0 ]]; then chown "${PG_USER:-postgres}" "$dir" "$dir/pg-socket"; fi
if [[ ! -f "$dir/pg/PG_VERSION" ]]; then
    "${as_pg[@]}" "$pg_bin/initdb" -D "$dir/pg" -U mlflow --auth=trust >"$dir/initdb.log" 2>&1 \
        || { echo "mlflow-server: initdb failed, see $dir/initdb.log" >&2; exit 1; }
fi
"${as_pg[@]}" "$pg_bin/pg_ctl" -D "$dir/pg" -l "$dir/pg/postgres.log" -w -t 60 \
    -o "-p $pg_port -k $dir/pg-socket -c listen_addresses=127.0.0.1" start >/dev/null \
    || { echo "mlflow-server: PostgreSQL did not start, see $dir/pg/postgres.log" >&2; exit 1; }
"${as_pg[@]}" "$pg_bin/psql" -h 127.0.0.1 -p "$pg_port" -U mlflow -d postgres -tAc \
    "SELECT 1 FROM pg_database WHERE datname = 'mlflow'" | grep -q 1 \
    || "${as_pg[@]}" "$pg_bin/createdb" -h 127.0.0.1 -p "$pg_port" -U mlflow mlflow
export MLFLOW_DISABLE_TELEMETRY=true DO_NOT_TRACK=1
setsid "$python" -m mlflow server --backend-store-uri "postgresql://mlflow@127.0.0.1:$pg_port/mlflow" \
    --artifacts-destination "$dir/artifacts" --serve-artifacts --host "$host" --port "$port" --workers 1 \
    >"$dir/mlflow.log" 2>&1 < /dev/null &
echo $! > "$dir/mlflow.pid"
for _ in $(seq 1 240); do
    if "$python" -c "import urllib.request,sys; urllib.request.urlopen('http://127.0.0.1:$port/health', timeout=2)" 2>/dev/null; then
        echo "mlflow-server: http://$host:$port (PostgreSQL 127.0.0.1:$pg_port, artifacts $dir/artifacts)"
        exit 0
    fi
    kill -0 "$(cat "$dir/mlflow.pid")" 2>/dev/null || break
    sleep 0.5
done
echo "mlflow-server: mlflow server did not start, see $dir/mlflow.log" >&2
exit 1
