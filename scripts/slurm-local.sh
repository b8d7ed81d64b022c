#!/usr/bin/env bash
# A real single-node SLURM on this machine, to try SLURM sweeps (hydra/launcher=slurm) without a cluster.
#
#   scripts/slurm-local.sh start    install (Debian: munge slurmctld slurmd slurm-client) if missing, then start
#   scripts/slurm-local.sh status   sinfo and squeue; exits nonzero when the cluster is not up
#   scripts/slurm-local.sh stop     cancel every job, wait for the queue to drain, stop the daemons it started
#
# Needs root (apt-get, the munge user, SlurmUser=root). Everything it writes lives in $NEUROCL_SLURM_DIR
# (default /var/lib/neurocl-slurm): slurm.conf, the daemons' pid files, state, spool and logs in log/.
# It also writes /etc/slurm/slurm.conf (a copy, marked; a foreign one is never overwritten) and, because
# accounting is off here and the real sacct then fails, a small sacct stand-in at /usr/local/bin/sacct
# (scripts/sacct-standin; removed again by stop). Both start and stop may be run twice.
# One partition, `debug`, with this machine's CPUs (from `slurmd -C`) and 95% of its memory.
set -euo pipefail

STATE=${NEUROCL_SLURM_DIR:-/var/lib/neurocl-slurm}
CONF=/etc/slurm/slurm.conf
MARK="# neurocl-slurm"
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
SACCT=/usr/local/bin/sacct
MUNGE_PID=/run/munge/munged.pid
NODE=$(hostname -s)
PARTITION=debug

say() { echo "slurm-local: $*"; }
die() { echo "slurm-local: $*" >&2; exit 1; }

# A recorded pid is ours only while that process still runs the program we started (pids are reused).
pid_alive() { [ "$(cat "/proc/$1/comm" 2>/dev/null)" = "$2" ]; }  # pid_alive PID PROGRAM
alive() {  # alive PIDFILE PROGRAM (a daemon removes its pid file as it exits)
    local pid
    pid=$(cat "$1" 2>/dev/null) || return 1
    [ -n "$pid" ] && pid_alive "$pid" "$2"
}

install_packages() {
    local missing=()
    [ -x /usr/sbin/munged ] || missing+=(munge)
    [ -x /usr/sbin/slurmctld ] || missing+=(slurmctld)
    [ -x /usr/sbin/slurmd ] || missing+=(slurmd)
    command -v sinfo >/dev/null || missing+=(slurm-client)
    [ ${#missing[@]} -eq 0 ] && return 0
    command -v apt-get >/dev/null || die "missing ${missing[*]} and no apt-get: install SLURM and munge yourself"
    say "installing ${missing[*]} (apt-get)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >"$STATE/log/apt.log" 2>&1 ||
        { apt-get update -qq >>"$STATE/log/apt.log" 2>&1 &&
          apt-get install -y -qq --no-install-recommends "${missing[@]}" >>"$STATE/log/apt.log" 2>&1; } ||
        die "apt-get install ${missing[*]} failed; see $STATE/log/apt.log"
}

munge_works() { munge -n 2>/dev/null | unmunge >/dev/null 2>&1; }

start_munge() {
    if munge_works; then return 0; fi  # ours from an earlier start, or the machine's own: either serves
    [ -s /etc/munge/munge.key ] || runuser -u munge -- mungekey --create
    install -d -o munge -g munge -m 0755 /run/munge
    runuser -u munge -- /usr/sbin/munged --force
    for _ in $(seq 50); do munge_works && break; sleep 0.1; done
    munge_works || die "munged did not come up; see /var/log/munge/munged.log"
    cp "$MUNGE_PID" "$STATE/munged.pid"  # recorded: stop ends only a munged this script started
}

write_conf() {
    local hw mem
    hw=$(slurmd -C | head -1)  # NodeName=... CPUs=2 Boards=1 SocketsPerBoard=1 CoresPerSocket=2 ThreadsPerCore=1 RealMemory=24105
    mem=$(sed -n 's/.*RealMemory=\([0-9]*\).*/\1/p' <<<"$hw")
    hw=$(tr ' ' '\n' <<<"$hw" | grep -E '^(CPUs|Boards|SocketsPerBoard|CoresPerSocket|ThreadsPerCore)=' | tr '\n' ' ')
    cat >"$STATE/slurm.conf.new" <<EOF
$MARK: written by scripts/slurm-local.sh; state, pids and logs in $STATE
ClusterName=neurocl
SlurmctldHost=$NODE(127.0.0.1)
SlurmUser=root
AuthType=auth/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/backfill
MpiDefault=none
ReturnToService=2
MinJobAge=86400
KillWait=5
StateSaveLocation=$STATE/ctld
SlurmdSpoolDir=$STATE/spool
SlurmctldPidFile=$STATE/slurmctld.pid
SlurmdPidFile=$STATE/slurmd.pid
SlurmctldLogFile=$STATE/log/slurmctld.log
SlurmdLogFile=$STATE/log/slurmd.log
NodeName=$NODE NodeAddr=127.0.0.1 ${hw}RealMemory=$((mem * 95 / 100)) State=UNKNOWN
PartitionName=$PARTITION Nodes=$NODE Default=YES MaxTime=INFINITE State=UP
EOF
    mv "$STATE/slurm.conf.new" "$STATE/slurm.conf"
    if [ -e "$CONF" ] && ! head -1 "$CONF" | grep -q "^$MARK"; then
        die "$CONF exists and was not written by this script: this machine has its own SLURM; use it"
    fi
    mkdir -p "$(dirname "$CONF")"
    cmp -s "$STATE/slurm.conf" "$CONF" || cp "$STATE/slurm.conf" "$CONF"
}

install_sacct() {
    if [ -e "$SACCT" ] && ! grep -q "neurocl-slurm sacct stand-in" "$SACCT"; then
        say "leaving $SACCT alone (not ours)"; return 0
    fi
    if [ ! -e "$SACCT" ] && sacct -n -X -j 1 -o JobID >/dev/null 2>&1; then return 0; fi  # the real one answers
    cmp -s "$HERE/sacct-standin" "$SACCT" || install -m 0755 "$HERE/sacct-standin" "$SACCT"
}

node_state() { sinfo -h -n "$NODE" -o %t 2>/dev/null | head -1; }

up() { scontrol ping 2>/dev/null | grep -q UP && [[ "$(node_state)" =~ ^(idle|mix|alloc|comp)$ ]]; }

start() {
    [ "$(id -u)" = 0 ] || die "needs root (apt-get, the munge user, SlurmUser=root)"
    local t0=$SECONDS
    mkdir -p "$STATE"/{ctld,spool,log}
    install_packages
    start_munge
    write_conf
    if alive "$STATE/slurmctld.pid" slurmctld; then scontrol reconfigure >/dev/null 2>&1 || true
    else /usr/sbin/slurmctld -i; fi
    alive "$STATE/slurmd.pid" slurmd || /usr/sbin/slurmd
    local state=""
    for _ in $(seq 150); do
        state=$(node_state)
        case "$state" in
            idle|mix|alloc|comp) break ;;
            down*|drain*|drng*|fail*) scontrol update NodeName="$NODE" State=RESUME >/dev/null 2>&1 || true ;;
        esac
        sleep 0.2
    done
    install_sacct
    up || { status || true; die "the node did not become idle (state: ${state:-none}); logs in $STATE/log"; }
    say "up in $((SECONDS - t0)) s: node $NODE, partition $PARTITION; state and logs in $STATE"
}

status() {
    local code=0
    for daemon in slurmctld slurmd munged; do
        if alive "$STATE/$daemon.pid" "$daemon"; then say "$daemon running (pid $(cat "$STATE/$daemon.pid"))"
        elif [ $daemon = munged ] && munge_works; then say "munged running (not started by this script)"
        else say "$daemon not running"; code=1; fi
    done
    if command -v sinfo >/dev/null && scontrol ping >/dev/null 2>&1; then
        sinfo
        squeue
    else
        say "no controller answers"; code=1
    fi
    up || code=1
    [ $code = 0 ] && say "up; state and logs in $STATE" || say "not up"
    return $code
}

stop_daemon() {  # stop_daemon NAME: SIGTERM the recorded pid, wait, SIGKILL that pid if it will not go
    local file="$STATE/$1.pid" pid
    pid=$(cat "$file" 2>/dev/null) || pid=""
    { [ -n "$pid" ] && pid_alive "$pid" "$1"; } || { rm -f "$file"; return 0; }
    kill -TERM "$pid"
    for _ in $(seq 100); do pid_alive "$pid" "$1" || break; sleep 0.1; done
    if pid_alive "$pid" "$1"; then say "$1 (pid $pid) ignored SIGTERM for 10 s; SIGKILL"; kill -KILL "$pid"; fi
    rm -f "$file"
    say "stopped $1 (pid $pid)"
}

stop() {
    if command -v squeue >/dev/null && scontrol ping >/dev/null 2>&1; then
        local jobs
        jobs=$(squeue -h -o %i | sort -u | tr '\n' ' ')
        if [ -n "${jobs// }" ]; then
            say "cancelling jobs: $jobs"
            # shellcheck disable=SC2086
            scancel $jobs || true
        fi
        for _ in $(seq 120); do [ -z "$(squeue -h -o %i)" ] && break; sleep 0.5; done
        [ -z "$(squeue -h -o %i)" ] || say "warning: the queue did not drain in 60 s: $(squeue -h -o '%i %T' | tr '\n' ' ')"
    fi
    stop_daemon slurmd
    stop_daemon slurmctld
    stop_daemon munged
    if [ -e "$SACCT" ] && grep -q "neurocl-slurm sacct stand-in" "$SACCT"; then rm -f "$SACCT"; fi
    local left
    left=$(ps -eo pid=,comm= | awk '$2 ~ /^(slurmctld|slurmd|slurmstepd)$/' | tr '\n' ' ')
    [ -z "${left// }" ] || say "warning: still running (not started by this script, or left by a crash): $left"
    say "stopped"
}

case "${1:-}" in
    start) start ;;
    stop) stop ;;
    status) status ;;
    *) echo "usage: $0 start|stop|status   (state in \$NEUROCL_SLURM_DIR, default /var/lib/neurocl-slurm)" >&2; exit 2 ;;
esac
