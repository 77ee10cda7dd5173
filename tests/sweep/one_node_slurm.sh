#!/usr/bin/env bash
# A one-node SLURM cluster for the launcher tests (research/scale.md): run as root inside
# `unshare --net` (loopback only, so nothing clashes with the host):
#   unshare --net bash one_node_slurm.sh DIR COMMAND...
# starts munge, slurmctld and slurmd with their state under DIR, waits until the node is idle,
# runs COMMAND, stops the daemons and exits with COMMAND's status.
set -u
dir=$(realpath "$1"); shift
mkdir -p "$dir/state" "$dir/spool"
ip link set lo up
# glibc's AF_INET lookups with AI_ADDRCONFIG ignore 127.0.0.1 unless lo has another address
ip addr add 127.0.0.2/8 dev lo
dd if=/dev/urandom of="$dir/munge.key" bs=1024 count=1 status=none && chmod 400 "$dir/munge.key"
export SLURM_CONF=$dir/slurm.conf
cat > "$SLURM_CONF" <<CONF
ClusterName=dlas
SlurmctldHost=$(hostname)(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket=$dir/munge.socket
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd.pid
SlurmctldPort=6817
SlurmdPort=6818
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
MpiDefault=none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SlurmctldLogFile=$dir/slurmctld.log
SlurmdLogFile=$dir/slurmd.log
NodeName=$(hostname) NodeAddr=127.0.0.1 CPUs=$(nproc) RealMemory=4000 State=UNKNOWN
PartitionName=debug Nodes=$(hostname) Default=YES MaxTime=INFINITE State=UP
CONF
pids=()
stop() {  # slurm first, munge (which slurm needs to shut down cleanly) last
  for ((i = ${#pids[@]} - 1; i >= 0; i--)); do kill "${pids[i]}" 2>/dev/null; wait "${pids[i]}"; done
}
trap stop EXIT
munged --force -F --socket="$dir/munge.socket" --key-file="$dir/munge.key" \
  --pid-file="$dir/munged.pid" --log-file="$dir/munged.log" --seed-file="$dir/munged.seed" \
  >/dev/null 2>&1 &
pids+=($!)
for _ in $(seq 50); do [ -S "$dir/munge.socket" ] && break; sleep 0.1; done
slurmctld -D -f "$SLURM_CONF" >/dev/null 2>&1 & pids+=($!)
slurmd -D -f "$SLURM_CONF" >/dev/null 2>&1 & pids+=($!)
for _ in $(seq 120); do
  sinfo -h -o %T 2>/dev/null | grep -qx idle && break
  sleep 0.5
done
if ! sinfo -h -o %T 2>/dev/null | grep -qx idle; then
  echo "the one-node SLURM cluster did not come up; logs:" >&2
  tail -n 5 "$dir"/*.log >&2
  exit 90
fi
"$@"
