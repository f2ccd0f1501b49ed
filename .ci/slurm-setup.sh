#!/usr/bin/env bash
# Install a single-node SLURM cluster's software from Debian's packages (bookworm: Slurm 22.05,
# MariaDB 10.11, munge). Only installs: the daemons are NOT started or enabled here; the test
# cluster is started on demand by profiles/armis2/testcluster/start.sh with all state in a temp folder.
# Idempotent: does nothing when every package is already installed. Needs root (or sudo).
set -euo pipefail

PACKAGES=(slurmctld slurmd slurm-client slurmdbd munge mariadb-server)

missing=()
for pkg in "${PACKAGES[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed"; then
        missing+=("$pkg")
    fi
done
if [ ${#missing[@]} -eq 0 ]; then
    echo "slurm-setup: all packages already installed (${PACKAGES[*]})"
    exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    SUDO="sudo"
fi

# Keep apt from auto-starting the daemons during installation (they would start with the
# system-wide config and state, which the test cluster does not use). policy-rc.d exit 101 =
# "action forbidden". Only remove the file if this script created it.
POLICY=/usr/sbin/policy-rc.d
created_policy=0
if [ ! -e "$POLICY" ]; then
    printf '#!/bin/sh\nexit 101\n' | $SUDO tee "$POLICY" >/dev/null
    $SUDO chmod 755 "$POLICY"
    created_policy=1
fi
cleanup() {
    if [ "$created_policy" -eq 1 ]; then
        $SUDO rm -f "$POLICY"
    fi
}
trap cleanup EXIT

echo "slurm-setup: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${PACKAGES[@]}" >/dev/null
for tool in sbatch sacct sacctmgr slurmctld slurmd slurmdbd munged mariadbd mariadb-install-db; do
    command -v "$tool" >/dev/null || { echo "slurm-setup: $tool missing after install" >&2; exit 1; }
done
echo "slurm-setup: installed slurm $(dpkg-query -W -f='${Version}' slurm-client)"
