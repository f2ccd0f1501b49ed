#!/usr/bin/env bash
# Start a single-node SLURM test cluster on this machine, loopback only, with job accounting
# (slurmdbd + MariaDB on a unix socket), so `snakemake --profile profiles/armis2` can be tested
# against a real scheduler. Software comes from Debian's packages (.ci/slurm-setup.sh).
#
#   profiles/armis2/testcluster/start.sh [STATE_DIR]      # default $NEUROVFM_SLURM_DIR or /tmp/neurovfm-slurm
#   source STATE_DIR/env.sh                               # SLURM_CONF, account, partition for the profile
#   profiles/armis2/testcluster/stop.sh [STATE_DIR]
#
# Everything (configs, munge key and socket, database, spool, logs, PID files) lives under
# STATE_DIR. The one thing outside it: a symlink /etc/slurm/slurm.conf -> STATE_DIR/etc/slurm.conf
# (created only if that path is free, removed by stop.sh), because the executor's job step runs
# `srun` without SLURM_CONF. Idempotent: daemons already running from
# STATE_DIR (checked through their PID files) are left alone. Needs root (slurmd launches jobs).
#
# The node is declared with SlurmdParameters=config_overrides, CPUs/RealMemory large enough for
# four of the profile's biggest requests side by side (default 128 CPUs, 256 GB; the biggest asks 32 CPUs,
# 64 GB; override with NEUROVFM_TESTCLUSTER_CPUS / NEUROVFM_TESTCLUSTER_MEM_MB), so sbatch is asked for
# exactly what profiles/armis2 asks on the real cluster and independent jobs (the shards of a stage) run
# together as they do there, not one after another. Memory is not enforced (no cgroups). Two fake GPUs of type
# $NEUROVFM_TESTCLUSTER_GPU_MODEL (default l40s) are declared as GRES without device files, so
# `--gpus=<model>:<n>` requests are scheduled and accounted (gres/gpu in sacct's AllocTRES).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=common.sh
. "$HERE/common.sh"
testcluster_init "${1:-}"

if [ "$(id -u)" -ne 0 ]; then
    die "must run as root (slurmd starts jobs as their submitting user)"
fi
for tool in munged mungekey mariadbd mariadb-install-db mariadb slurmdbd slurmctld slurmd sacctmgr sinfo scontrol; do
    command -v "$tool" >/dev/null || die "$tool not found; install the packages with .ci/slurm-setup.sh"
done

CPUS="${NEUROVFM_TESTCLUSTER_CPUS:-128}"
MEM_MB="${NEUROVFM_TESTCLUSTER_MEM_MB:-262144}"
GPU_MODEL="${NEUROVFM_TESTCLUSTER_GPU_MODEL:-l40s}"
NODE=neurovfm-node1

mkdir -p "$D"/{etc,log,run,munge,dev,spool/ctld,spool/d,mysql/data}
chmod 755 "$D/munge"   # munged: socket dir must be executable by all; the key itself is 0400

# ---------------------------------------------------------------- configuration (rewritten each start)
render() {  # render TEMPLATE OUTPUT: substitute @KEY@ placeholders
    sed -e "s|@D@|$D|g" -e "s|@CLUSTER@|$CLUSTER|g" -e "s|@PARTITION@|$PARTITION|g" \
        -e "s|@NODE@|$NODE|g" -e "s|@CPUS@|$CPUS|g" -e "s|@MEM_MB@|$MEM_MB|g" \
        -e "s|@GPU_MODEL@|$GPU_MODEL|g" -e "s|@USER@|root|g" \
        -e "s|@CTLD_PORT@|$CTLD_PORT|g" -e "s|@SLURMD_PORT@|$SLURMD_PORT|g" -e "s|@DBD_PORT@|$DBD_PORT|g" \
        "$1" >"$2"
}
render "$HERE/slurm.conf.in" "$D/etc/slurm.conf"
render "$HERE/slurmdbd.conf.in" "$D/etc/slurmdbd.conf"
render "$HERE/gres.conf.in" "$D/etc/gres.conf"
chmod 600 "$D/etc/slurmdbd.conf"          # slurmdbd refuses a readable config (it may hold passwords)
printf 'ConstrainCores=no\nConstrainRAMSpace=no\n' >"$D/etc/cgroup.conf"

cat >"$D/env.sh" <<EOF
# source this file to talk to the neurovfm SLURM test cluster in $D
export SLURM_CONF="$D/etc/slurm.conf"
export NEUROVFM_SLURM_ACCOUNT="$ACCOUNT"
export NEUROVFM_SLURM_PARTITION="$PARTITION"
export NEUROVFM_SLURM_GPU_PARTITION="$PARTITION"
export NEUROVFM_SLURM_GPU_MODEL="$GPU_MODEL"
EOF
export SLURM_CONF="$D/etc/slurm.conf"

# The SLURM executor's job step (snakemake-executor-plugin-slurm-jobstep) drops SLURM_CONF before
# its nested `srun`, so inside a job the clients must find the config at Slurm's default path.
# Link it there, unless another cluster's config is already in place.
if [ -L "$SYSTEM_CONF" ] && [ "$(readlink "$SYSTEM_CONF")" = "$D/etc/slurm.conf" ]; then
    :
elif [ -e "$SYSTEM_CONF" ] || [ -L "$SYSTEM_CONF" ]; then
    die "$SYSTEM_CONF exists and is not this test cluster's; refusing to start (jobs' srun would use it)"
else
    mkdir -p "$(dirname "$SYSTEM_CONF")"
    ln -s "$D/etc/slurm.conf" "$SYSTEM_CONF"
fi
# slurmdbd's MariaDB client reads no option file; this variable names the server's socket
export MYSQL_UNIX_PORT="$D/mysql/mysqld.sock"

# fake GPU device files for gres.conf (same device as /dev/null)
for i in 0 1; do
    [ -c "$D/dev/fakegpu$i" ] || mknod "$D/dev/fakegpu$i" c 1 3
done

# ---------------------------------------------------------------- munge
if ! is_running munged; then
    [ -s "$D/munge/munge.key" ] || mungekey --create --keyfile="$D/munge/munge.key"
    chmod 400 "$D/munge/munge.key"
    munged --socket="$D/munge/munge.socket" --key-file="$D/munge/munge.key" \
        --pid-file="$D/run/munged.pid" --log-file="$D/log/munged.log" --seed-file="$D/munge/munge.seed"
    wait_for "munged socket" 20 test -S "$D/munge/munge.socket"
fi

# ---------------------------------------------------------------- MariaDB (unix socket only)
if ! is_running mariadbd; then
    if [ ! -d "$D/mysql/data/mysql" ]; then
        mariadb-install-db --no-defaults --user=root --datadir="$D/mysql/data" \
            --auth-root-authentication-method=socket --skip-test-db >"$D/log/mariadb-install.log" 2>&1 \
            || die "mariadb-install-db failed, see $D/log/mariadb-install.log"
    fi
    setsid mariadbd --no-defaults --user=root --datadir="$D/mysql/data" --skip-networking \
        --socket="$D/mysql/mysqld.sock" --pid-file="$D/run/mariadbd.pid" \
        --log-error="$D/log/mariadbd.log" --innodb-buffer-pool-size=64M </dev/null >/dev/null 2>&1 &
    wait_for "MariaDB" 60 mariadb --no-defaults --socket="$D/mysql/mysqld.sock" -u root -e "SELECT 1"
fi

# ---------------------------------------------------------------- slurmdbd
if ! is_running slurmdbd; then
    slurmdbd   # reads slurmdbd.conf next to $SLURM_CONF
    wait_for "slurmdbd" 60 sacctmgr -i -n list cluster
fi
# cluster, account and user associations (sacctmgr is idempotent through these checks)
if [ -z "$(sacctmgr -n -P list cluster "$CLUSTER" format=cluster)" ]; then
    sacctmgr -i add cluster "$CLUSTER" >/dev/null
fi

# ---------------------------------------------------------------- slurmctld + slurmd
if ! is_running slurmctld; then
    slurmctld -f "$D/etc/slurm.conf"
    wait_for "slurmctld" 60 scontrol ping
fi
if [ -z "$(sacctmgr -n -P list account "$ACCOUNT" format=account)" ]; then
    sacctmgr -i add account "$ACCOUNT" cluster="$CLUSTER" description="neurovfm test" organization=neurovfm >/dev/null
fi
if [ -z "$(sacctmgr -n -P list assoc cluster="$CLUSTER" account="$ACCOUNT" user=root format=user)" ]; then
    sacctmgr -i add user root account="$ACCOUNT" cluster="$CLUSTER" defaultaccount="$ACCOUNT" >/dev/null
fi
if ! is_running slurmd; then
    slurmd -f "$D/etc/slurm.conf" -N "$NODE"
fi
# a drain/down state saved by an earlier run (e.g. an older config) survives restarts: clear it
# once slurmd has registered, then the node must become usable
wait_for "slurmd registration" 30 node_registered "$NODE"
case "$(sinfo -h -n "$NODE" -o %t)" in
    drain* | drng* | down* | inval*)
        scontrol update NodeName="$NODE" State=RESUME || die "cannot resume $NODE: $(sinfo -h -R -n "$NODE")"
        ;;
esac
wait_for "node $NODE idle" 30 node_ready "$NODE"

echo "testcluster: up in $D (cluster $CLUSTER, partition $PARTITION, account $ACCOUNT, node $NODE: $CPUS CPUs, ${MEM_MB} MB, gpu:$GPU_MODEL:2)"
echo "testcluster: run 'source $D/env.sh' before sbatch/snakemake"
