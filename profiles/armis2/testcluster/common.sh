# Shared by start.sh and stop.sh (sourced, not executed).

die() {
    echo "testcluster: $*" >&2
    exit 1
}

# testcluster_init [STATE_DIR]: names and ports of the test cluster.
testcluster_init() {
    D="${1:-${NEUROVFM_SLURM_DIR:-/tmp/neurovfm-slurm}}"
    case "$D" in
        /*) ;;
        *) D="$(pwd)/$D" ;;
    esac
    CLUSTER="${NEUROVFM_TESTCLUSTER_NAME:-neurovfmtest}"
    ACCOUNT="${NEUROVFM_TESTCLUSTER_ACCOUNT:-neurovfm_test}"
    PARTITION="${NEUROVFM_TESTCLUSTER_PARTITION:-neurovfm}"
    SYSTEM_CONF=/etc/slurm/slurm.conf   # Slurm's compiled-in default path (Debian)
    local base="${NEUROVFM_TESTCLUSTER_PORT_BASE:-16817}"
    CTLD_PORT="$base"
    SLURMD_PORT="$((base + 1))"
    DBD_PORT="$((base + 2))"
}

# pid_of NAME: the PID recorded in $D/run/NAME.pid when that process is alive and is NAME.
pid_of() {
    local pidfile="$D/run/$1.pid" pid
    [ -s "$pidfile" ] || return 1
    pid="$(tr -dc '0-9' <"$pidfile")"
    [ -n "$pid" ] && [ -r "/proc/$pid/cmdline" ] || return 1
    # guard against a recycled PID: the process must be the daemon this cluster started
    tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q "$1" || return 1
    echo "$pid"
}

is_running() {
    pid_of "$1" >/dev/null
}

# wait_for WHAT SECONDS CMD...: poll CMD every 0.5 s until it succeeds.
wait_for() {
    local what="$1" seconds="$2" i
    shift 2
    for ((i = 0; i < seconds * 2; i++)); do
        if "$@" >/dev/null 2>&1; then
            return 0
        fi
        sleep 0.5
    done
    die "$what did not come up within ${seconds}s; logs in $D/log/"
}

node_ready() {
    local state
    state="$(sinfo -h -n "$1" -o %t 2>/dev/null)"
    case "$state" in
        *'*') return 1 ;;  # not responding
        idle* | mix* | alloc*) return 0 ;;
        *) return 1 ;;
    esac
}

# node_registered NODE: slurmctld has heard from slurmd (state no longer unknown/not responding)
node_registered() {
    local state
    state="$(sinfo -h -n "$1" -o %t 2>/dev/null)"
    [ -n "$state" ] && case "$state" in *'*' | unk*) return 1 ;; *) return 0 ;; esac
}
