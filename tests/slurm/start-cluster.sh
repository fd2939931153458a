#!/usr/bin/env bash
# A one-node SLURM (Debian's slurmctld/slurmd/munge, no slurmdbd, no systemd) for tests/test_slurm.py, as root.
# FAKE_GPUS=N declares N GPUs backed by character devices aliasing /dev/null: --gpus requests schedule and SLURM
# sets CUDA_VISIBLE_DEVICES per job (gres flag nvidia_gpu_env), while torch still sees no CUDA device.
set -euo pipefail
n_gpus=${FAKE_GPUS:-0}
cpus=$(nproc --all)  # --all: nproc alone obeys OMP_NUM_THREADS, which the test suite sets to 1
mem=$(( $(free -m | awk '/^Mem:/{print $2}') * 85 / 100 ))
gres_node=""
gres_types=""
install -d /etc/slurm /var/lib/slurm/fakegpu
if [ "$n_gpus" -gt 0 ]; then
  for i in $(seq 0 $((n_gpus - 1))); do
    [ -c /var/lib/slurm/fakegpu/gpu$i ] || mknod /var/lib/slurm/fakegpu/gpu$i c 1 3
  done
  echo "NodeName=localhost Name=gpu File=/var/lib/slurm/fakegpu/gpu[0-$((n_gpus - 1))] Flags=nvidia_gpu_env" \
    > /etc/slurm/gres.conf
  gres_node=" Gres=gpu:${n_gpus}"
  gres_types="GresTypes=gpu"
else
  rm -f /etc/slurm/gres.conf
fi
cat > /etc/slurm/slurm.conf <<CONF
ClusterName=wsss-test
SlurmctldHost=localhost
SlurmUser=slurm
AuthType=auth/munge
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
ReturnToService=2
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
# a job without --mem would otherwise take the whole node and jobs would run one at a time
DefMemPerCPU=500
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
JobAcctGatherType=jobacct_gather/none
# finished jobs stay visible to squeue (the plugin's status command here) for 10 minutes
MinJobAge=600
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
SlurmdSpoolDir=/var/lib/slurm/slurmd
StateSaveLocation=/var/lib/slurm/slurmctld
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
${gres_types}
NodeName=localhost NodeAddr=127.0.0.1 CPUs=${cpus} RealMemory=${mem}${gres_node} State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
CONF
[ -s /etc/munge/munge.key ] || mungekey --create
chown munge:munge /etc/munge/munge.key
chmod 0400 /etc/munge/munge.key
install -d -o munge -g munge -m 0755 /run/munge
pgrep -x munged > /dev/null || runuser -u munge -- /usr/sbin/munged
install -d -o slurm -g slurm /var/lib/slurm/slurmctld /var/lib/slurm/slurmd /var/log/slurm
pgrep -x slurmctld > /dev/null || /usr/sbin/slurmctld
pgrep -x slurmd > /dev/null || /usr/sbin/slurmd
for _ in $(seq 60); do
  sinfo -h -o %t 2> /dev/null | grep -q idle && break
  sleep 1
done
sinfo -o '%P %a %D %t %N %G'
srun -n1 true
echo "slurm is up: ${cpus} CPUs, ${mem} MB, ${n_gpus} fake GPUs"
