#!/usr/bin/env bash
# Stop what start-cluster.sh started (by pid file), and wait until the daemons are gone.
for f in /run/slurmd.pid /run/slurmctld.pid /run/munge/munged.pid; do
  [ -s "$f" ] && kill "$(cat "$f")" 2> /dev/null || true
done
for _ in $(seq 20); do
  pgrep -x 'slurmctld|slurmd|munged' > /dev/null || exit 0
  sleep 0.5
done
pkill -x slurmd; pkill -x slurmctld; pkill -x munged; true
