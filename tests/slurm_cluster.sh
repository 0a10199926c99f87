#!/bin/sh
# Start (or stop) a single-node SLURM cluster on this machine for tests/test_slurm.py.
#   tests/slurm_cluster.sh start DIR   # writes DIR/slurm.conf, gres.conf; starts munged, slurmctld, slurmd
#   tests/slurm_cluster.sh stop DIR
# Needs root and Debian's slurm-wlm + munge packages. Two partitions (cpu, gpu) on one node; the node
# offers one `gpu` GRES (a CPU stand-in: /dev/null), so `--gres=gpu:1` is scheduled as on a real site.
set -eu
cmd=$1
dir=$(realpath "$2")
host=$(hostname -s)
case "$cmd" in
start)
  mkdir -p "$dir/spool/ctld" "$dir/spool/d" "$dir/log" /run/munge
  chown munge:munge /run/munge 2>/dev/null || true
  [ -s /etc/munge/munge.key ] || (dd if=/dev/urandom bs=1 count=1024 of=/etc/munge/munge.key 2>/dev/null && chown munge:munge /etc/munge/munge.key && chmod 400 /etc/munge/munge.key)
  if ! pgrep -x munged >/dev/null; then
    su -s /bin/sh munge -c "/usr/sbin/munged --force" 2>/dev/null || /usr/sbin/munged --force
  fi
  cpus=$(nproc)
  mem=$(awk '/MemTotal/ {print int($2/1024/2)}' /proc/meminfo)
  cat > "$dir/slurm.conf" <<CONF
ClusterName=cephalotest
SlurmctldHost=$host
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
StateSaveLocation=$dir/spool/ctld
SlurmdSpoolDir=$dir/spool/d
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd.pid
SlurmctldLogFile=$dir/log/slurmctld.log
SlurmdLogFile=$dir/log/slurmd.log
SlurmctldPort=16817
SlurmdPort=16818
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU_Memory
GresTypes=gpu
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
MpiDefault=none
ReturnToService=2
SchedulerType=sched/backfill
SlurmctldTimeout=30
SlurmdTimeout=30
InactiveLimit=0
MinJobAge=3600
KillWait=5
NodeName=$host CPUs=$cpus RealMemory=$mem Gres=gpu:1 State=UNKNOWN
PartitionName=cpu Nodes=$host Default=YES MaxTime=INFINITE State=UP OverSubscribe=FORCE:4
PartitionName=gpu Nodes=$host MaxTime=INFINITE State=UP OverSubscribe=FORCE:4
CONF
  echo "NodeName=$host Name=gpu File=/dev/null Count=1" > "$dir/gres.conf"
  # job steps (srun inside sbatch) look for the default config path: point it here if it is free
  if [ ! -e /etc/slurm/slurm.conf ]; then
    mkdir -p /etc/slurm && ln -s "$dir/slurm.conf" /etc/slurm/slurm.conf && touch "$dir/linked-etc"
  fi
  export SLURM_CONF="$dir/slurm.conf"
  /usr/sbin/slurmctld -f "$dir/slurm.conf"
  /usr/sbin/slurmd -f "$dir/slurm.conf"
  for i in $(seq 1 60); do
    if sinfo -h -o %T 2>/dev/null | grep -q idle; then exit 0; fi
    sleep 1
  done
  echo "slurm did not come up:" >&2; tail -5 "$dir/log/slurmctld.log" "$dir/log/slurmd.log" >&2; exit 1
  ;;
stop)
  for f in "$dir/slurmd.pid" "$dir/slurmctld.pid"; do
    [ -s "$f" ] && kill "$(cat "$f")" 2>/dev/null || true
  done
  # daemons that wrote no pid file: found by the config file they were started with
  pkill -f "slurmd -f $dir/slurm.conf" 2>/dev/null || true
  pkill -f "slurmctld -f $dir/slurm.conf" 2>/dev/null || true
  [ -e "$dir/linked-etc" ] && rm -f /etc/slurm/slurm.conf "$dir/linked-etc" || true
  ;;
esac
