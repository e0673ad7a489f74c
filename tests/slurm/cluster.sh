#!/usr/bin/env bash
# A one-node SLURM cluster on this machine, for tests/test_slurm.py (needs root and apt on Debian).
#
#   tests/slurm/cluster.sh up     # install slurm-wlm + munge if missing, start munged, slurmctld,
#                                 # slurmd; return once `sinfo` shows the node idle
#   tests/slurm/cluster.sh down   # stop exactly the daemons `up` started (by their recorded pids)
#
# The node has two CPUs, one partition (`main`, the default: as on a new one-node cluster, where the
# profile must work without naming partitions) and one simulated GPU (gres.conf points it at /dev/null): the scheduler then runs jobs asking for
# --gpus=1 one at a time and sets CUDA_VISIBLE_DEVICES for them, although no CUDA device exists.
# There is no accounting database, so the executor plugin must query job states with squeue
# (--slurm-status-command squeue), and MinJobAge keeps finished jobs visible to squeue for a while.
#
# Everything it writes lives in $SLURM_STATE_DIR (default /tmp/mlmdyn-slurm). Client commands find
# the configuration through /etc/slurm/slurm.conf, which `up` links to the state directory when no
# other configuration is there (and `down` unlinks); otherwise export SLURM_CONF=$STATE/slurm.conf.
set -euo pipefail

STATE=${SLURM_STATE_DIR:-/tmp/mlmdyn-slurm}
CONF=$STATE/slurm.conf
SYSTEM_CONF=/etc/slurm/slurm.conf
MUNGE_SOCKET=/run/munge/munge.socket.2

log() { echo "cluster.sh: $*" >&2; }

install_packages() {
    if command -v slurmctld >/dev/null && command -v slurmd >/dev/null \
        && command -v munged >/dev/null && command -v sinfo >/dev/null; then
        return
    fi
    log "installing slurm-wlm and munge"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq slurm-wlm munge >/dev/null
}

write_config() {
    local host cpus mem_total real_memory
    host=$(hostname -s)
    cpus=2
    mem_total=$(free -m | awk '/^Mem:/ {print $2}')
    # Leave the operating system and the test process some memory.
    real_memory=$((mem_total * 85 / 100))
    mkdir -p "$STATE"/ctld "$STATE"/slurmd "$STATE"/log
    cat >"$CONF" <<EOF
# Written by tests/slurm/cluster.sh: a one-node test cluster, not for production.
ClusterName=mlmdyn
SlurmctldHost=$host
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
StateSaveLocation=$STATE/ctld
SlurmdSpoolDir=$STATE/slurmd
SlurmctldPidFile=$STATE/slurmctld.pid
SlurmdPidFile=$STATE/slurmd.pid
SlurmctldLogFile=$STATE/log/slurmctld.log
SlurmdLogFile=$STATE/log/slurmd.log
SlurmctldPort=${SLURM_CTLD_PORT:-6817}
SlurmdPort=${SLURM_D_PORT:-6818}
# No cgroups in containers and CI machines: track processes through /proc, bind no tasks.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
SwitchType=switch/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
# No slurmdbd: sacct has nothing to report, the executor plugin polls squeue instead.
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
# Keep finished jobs in squeue for 30 minutes so that every poll (and the test) sees them.
MinJobAge=1800
ReturnToService=2
SlurmdTimeout=300
InactiveLimit=0
KillWait=5
# Believe the node line below rather than the hardware (the GPU is simulated).
SlurmdParameters=config_overrides
GresTypes=gpu
NodeName=$host CPUs=$cpus RealMemory=$real_memory Gres=gpu:1 State=UNKNOWN
PartitionName=main Nodes=$host Default=YES MaxTime=INFINITE State=UP
EOF
    cat >"$STATE/gres.conf" <<EOF
# One simulated GPU: the scheduler allocates it and sets CUDA_VISIBLE_DEVICES; there is no device.
NodeName=$host Name=gpu File=/dev/null
EOF
    cat >"$STATE/cgroup.conf" <<EOF
CgroupPlugin=autodetect
EOF
    if [[ ! -e $SYSTEM_CONF || $(readlink "$SYSTEM_CONF" || true) == "$CONF" ]]; then
        mkdir -p "$(dirname "$SYSTEM_CONF")"
        ln -sfn "$CONF" "$SYSTEM_CONF"
        echo "$SYSTEM_CONF" >"$STATE/linked_conf"
    else
        log "$SYSTEM_CONF exists: export SLURM_CONF=$CONF before using the cluster"
    fi
}

# Start a daemon in the foreground, in its own session, and record its pid for `down`.
start_daemon() {
    local name=$1
    shift
    setsid "$@" >"$STATE/log/$name.out" 2>&1 </dev/null &
    echo $! >"$STATE/$name.started.pid"
}

start_munge() {
    if [[ -S $MUNGE_SOCKET ]] && munge -n </dev/null 2>/dev/null | unmunge >/dev/null 2>&1; then
        log "munged is already running; using it"
        return
    fi
    if [[ ! -s /etc/munge/munge.key ]]; then
        mkdir -p /etc/munge
        dd if=/dev/urandom of=/etc/munge/munge.key bs=1 count=1024 status=none
        chmod 400 /etc/munge/munge.key
    fi
    mkdir -p /run/munge /var/lib/munge /var/log/munge
    start_daemon munged munged --force --foreground --socket="$MUNGE_SOCKET" \
        --log-file="$STATE/log/munged.log" --pid-file="$STATE/munged.pid" \
        --seed-file="$STATE/munged.seed"
    for _ in $(seq 50); do
        if munge -n </dev/null | unmunge >/dev/null 2>&1; then
            return
        fi
        sleep 0.2
    done
    log "munged did not come up; see $STATE/log/munged.log"
    exit 1
}

wait_idle() {
    local host state
    host=$(hostname -s)
    for _ in $(seq 120); do
        state=$(SLURM_CONF=$CONF sinfo -h -n "$host" -o %t 2>/dev/null | head -1 || true)
        if [[ $state == idle* ]]; then
            log "node $host is idle (state in $STATE)"
            return
        fi
        sleep 0.5
    done
    log "node $host did not become idle (state: '${state:-none}'); see $STATE/log"
    SLURM_CONF=$CONF sinfo -R >&2 || true
    exit 1
}

up() {
    install_packages
    if [[ -s $STATE/slurmctld.started.pid ]] && kill -0 "$(cat "$STATE/slurmctld.started.pid")" 2>/dev/null; then
        log "already up (state in $STATE)"
        wait_idle
        return
    fi
    write_config
    start_munge
    export SLURM_CONF=$CONF
    # -i: ignore state left by an earlier cluster in $STATE (jobs, node states)
    start_daemon slurmctld slurmctld -D -i -f "$CONF"
    start_daemon slurmd slurmd -D -f "$CONF"
    wait_idle
}

down() {
    local name pid
    if [[ -s $STATE/slurmctld.started.pid ]]; then
        # Jobs still running on this test cluster would outlive slurmd otherwise.
        SLURM_CONF=$CONF scancel --full --user="$(id -un)" 2>/dev/null || true
    fi
    for name in slurmd slurmctld munged; do
        if [[ -s $STATE/$name.started.pid ]]; then
            pid=$(cat "$STATE/$name.started.pid")
            if kill -0 "$pid" 2>/dev/null; then
                kill "$pid"
                for _ in $(seq 50); do
                    kill -0 "$pid" 2>/dev/null || break
                    sleep 0.1
                done
                kill -0 "$pid" 2>/dev/null && kill -9 "$pid"
            fi
            rm -f "$STATE/$name.started.pid"
        fi
    done
    if [[ -s $STATE/linked_conf ]]; then
        rm -f "$(cat "$STATE/linked_conf")"
        rm -f "$STATE/linked_conf"
    fi
    log "down"
}

case ${1:-} in
up) up ;;
down) down ;;
*)
    echo "usage: $0 up|down" >&2
    exit 2
    ;;
esac
