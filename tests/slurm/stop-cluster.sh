#!/usr/bin/env bash
# Stop what start-cluster.sh started (by pid file), wait until the daemons are gone, and remove its config: with a
# slurm.conf naming a controller that is down, `scontrol show config` (which the slurm executor plugin runs when
# Snakemake loads it, on every snakemake start) hangs for its 10 s timeout; without one it fails at once.
for f in /run/slurmd.pid /run/slurmctld.pid /run/munge/munged.pid; do
  [ -s "$f" ] && kill "$(cat "$f")" 2> /dev/null || true
done
for _ in $(seq 20); do
  pgrep -x 'slurmctld|slurmd|munged' > /dev/null || break
  sleep 0.5
done
pkill -x slurmd; pkill -x slurmctld; pkill -x munged
rm -f /etc/slurm/slurm.conf /etc/slurm/gres.conf
true
