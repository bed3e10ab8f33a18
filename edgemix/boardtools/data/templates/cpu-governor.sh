#!/usr/bin/env bash
# Show or set the CPU frequency governor of every core (edgemix target @TARGET@).
#   cpu-governor.sh show
#   cpu-governor.sh set performance     (root)
set -euo pipefail
cmd="${1:-show}"
shopt -s nullglob
files=(/sys/devices/system/cpu/cpu[0-9]*/cpufreq/scaling_governor)
if [ "${#files[@]}" -eq 0 ]; then
  echo "cpu-governor: this system exposes no cpufreq governors (fixed clock or a VM)" >&2
  exit 0
fi
case "$cmd" in
  show)
    for f in "${files[@]}"; do
      cpu=${f#/sys/devices/system/cpu/}; cpu=${cpu%%/*}
      echo "$cpu $(cat "$f")"
    done ;;
  set)
    want="${2:?usage: cpu-governor.sh set GOVERNOR}"
    avail=$(cat "${files[0]%/scaling_governor}/scaling_available_governors" 2>/dev/null || true)
    case " $avail " in
      *" $want "*) ;;
      *) echo "cpu-governor: '$want' is not available here (have: ${avail:-unknown})" >&2; exit 1 ;;
    esac
    for f in "${files[@]}"; do echo "$want" > "$f"; done
    echo "cpu-governor: $want on ${#files[@]} CPUs" ;;
  *) echo "usage: cpu-governor.sh show | set GOVERNOR" >&2; exit 2 ;;
esac
