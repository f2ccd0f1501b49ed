#!/usr/bin/env bash
# Stop the SLURM test cluster that start.sh started in STATE_DIR: exactly the daemons whose PID
# files are in STATE_DIR/run (checked to still be those daemons), in reverse order of start.
#   profiles/armis2/testcluster/stop.sh [STATE_DIR] [--purge]
# --purge also deletes STATE_DIR (configs, database, logs) afterwards.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=common.sh
. "$HERE/common.sh"

purge=0
dir_arg=""
for arg in "$@"; do
    case "$arg" in
        --purge) purge=1 ;;
        *) dir_arg="$arg" ;;
    esac
done
testcluster_init "$dir_arg"

if [ -f "$D/etc/slurm.conf" ]; then
    export SLURM_CONF="$D/etc/slurm.conf"
    # cancel jobs left behind so slurmd has no job processes to orphan
    if is_running slurmctld; then
        scancel --quiet --full --partition="$PARTITION" --user=root 2>/dev/null || true
    fi
fi

stop_daemon() {  # stop_daemon NAME: SIGTERM, wait up to 30 s, then SIGKILL
    local name="$1" pid i
    pid="$(pid_of "$name")" || { echo "testcluster: $name not running"; return 0; }
    kill -TERM "$pid"
    for ((i = 0; i < 60; i++)); do
        [ -d "/proc/$pid" ] || break
        sleep 0.5
    done
    if [ -d "/proc/$pid" ]; then
        echo "testcluster: $name ($pid) ignored SIGTERM, killing" >&2
        kill -KILL "$pid"
    fi
    rm -f "$D/run/$name.pid"
    echo "testcluster: stopped $name ($pid)"
}

for daemon in slurmd slurmctld slurmdbd mariadbd munged; do
    stop_daemon "$daemon"
done

if [ -L "$SYSTEM_CONF" ] && [ "$(readlink "$SYSTEM_CONF")" = "$D/etc/slurm.conf" ]; then
    rm -f "$SYSTEM_CONF"
    echo "testcluster: removed link $SYSTEM_CONF"
fi

if [ "$purge" -eq 1 ] && [ -d "$D" ]; then
    rm -rf "$D"
    echo "testcluster: removed $D"
fi
