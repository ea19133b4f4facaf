#!/usr/bin/env bash
# Compare this host with the ringgate tuning profile, and optionally apply it.
#
#   tuning/apply.sh            dry run: shows current vs profile for every knob, changes nothing
#   sudo tuning/apply.sh --apply
#                              installs tuning/sysctl.conf as /etc/sysctl.d/60-ringgate.conf and
#                              tuning/limits.conf as /etc/security/limits.d/60-ringgate.conf,
#                              loads the sysctls now, then reads everything back and verifies
#
# Values that are already better than the profile (a larger backlog, more files) are
# left alone: the profile only raises limits. Exit status: 0 when the host matches
# the profile (dry run) or everything applied and verified (--apply), 1 otherwise.
# Afterwards `ringgate check` confirms the gateway sees what it needs (tuning/README.md).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
SYSCTL_SRC="$HERE/sysctl.conf"
LIMITS_SRC="$HERE/limits.conf"
SYSCTL_DST="${SYSCTL_DST:-/etc/sysctl.d/60-ringgate.conf}"
LIMITS_DST="${LIMITS_DST:-/etc/security/limits.d/60-ringgate.conf}"

APPLY=0
case "${1:-}" in
  "") ;;
  --apply) APPLY=1 ;;
  -h | --help) sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
  *) echo "usage: $0 [--apply]" >&2; exit 2 ;;
esac

# Knobs where a larger current value is at least as good as the profile's.
AT_LEAST=" net.core.somaxconn net.ipv4.tcp_max_syn_backlog net.core.netdev_max_backlog
  net.core.rmem_max net.core.wmem_max fs.file-max fs.nr_open "

# Triples where each of min/default/max may be higher than the profile's (kept, per field).
VECTOR_AT_LEAST=" net.ipv4.tcp_rmem net.ipv4.tcp_wmem "

norm() { tr -s ' \t' ' ' <<<"$1" | sed 's/^ //; s/ $//'; }

# Reads the profile: prints "key<TAB>value" lines.
profile_sysctls() {
  sed -e 's/#.*//' "$SYSCTL_SRC" | awk -F= 'NF >= 2 {
    k = $1; v = $2; gsub(/^[ \t]+|[ \t]+$/, "", k); gsub(/^[ \t]+|[ \t]+$/, "", v); gsub(/[ \t]+/, " ", v)
    print k "\t" v }'
}

current_sysctl() {
  local f="/proc/sys/${1//.//}"
  if [[ -r "$f" ]]; then norm "$(cat "$f")"; else echo "(absent)"; fi
}

# status KEY CURRENT WANTED -> "ok" | "better" | "absent" | "change VALUE-TO-SET"
status() {
  local key="$1" cur="$2" want="$3" c w out=() i
  [[ "$cur" == "(absent)" ]] && { echo absent; return; }
  [[ "$cur" == "$want" ]] && { echo ok; return; }
  if [[ "$AT_LEAST" == *" $key "* ]] && [[ "$cur" =~ ^[0-9]+$ ]] && ((cur >= want)); then
    echo better; return
  fi
  if [[ "$VECTOR_AT_LEAST" == *" $key "* ]]; then
    read -ra c <<<"$cur"; read -ra w <<<"$want"
    if ((${#c[@]} == ${#w[@]})); then
      for i in "${!w[@]}"; do
        if ((c[i] > w[i])); then out+=("${c[i]}"); else out+=("${w[i]}"); fi
      done
      if [[ "${out[*]}" == "$cur" ]]; then echo better; else echo "change ${out[*]}"; fi
      return
    fi
  fi
  echo "change $want"
}

TODO=()
report() {
  local key want cur st
  printf '%-32s %-24s %-24s %s\n' "sysctl" "current" "profile" "status"
  printf '%-32s %-24s %-24s %s\n' "------" "-------" "-------" "------"
  TODO=()
  while IFS=$'\t' read -r key want; do
    cur="$(current_sysctl "$key")"
    st="$(status "$key" "$cur" "$want")"
    case "$st" in
      ok) label="ok" ;;
      better) label="ok (current is higher; kept)" ;;
      absent) label="not on this kernel (skipped)" ;;
      *) label="CHANGE -> ${st#change }"; TODO+=("$key=${st#change }") ;;
    esac
    printf '%-32s %-24s %-24s %s\n' "$key" "$cur" "$want" "$label"
  done < <(profile_sysctls)
}

limits_report() {
  local nofile memlock want_nofile want_memlock
  want_nofile="$(awk '$1 !~ /^#/ && $3 == "nofile" {print $4; exit}' "$LIMITS_SRC")"
  want_memlock="$(awk '$1 !~ /^#/ && $3 == "memlock" {print $4; exit}' "$LIMITS_SRC")"
  nofile="$(ulimit -Hn)"; memlock="$(ulimit -Hl)"
  echo
  printf '%-32s %-24s %-24s %s\n' "limit (this shell, hard)" "current" "profile" "status"
  printf '%-32s %-24s %-24s %s\n' "------------------------" "-------" "-------" "------"
  lim_status() {
    local cur="$1" want="$2"
    if [[ "$cur" == unlimited ]]; then echo ok; return; fi
    if [[ "$want" == unlimited ]]; then echo "low (new sessions / LimitMEMLOCK)"; return; fi
    if ((cur >= want)); then echo ok; else echo "low (new sessions / LimitNOFILE)"; fi
  }
  # ulimit -l is in KiB; the profile says "unlimited" or a KiB count, as limits.conf does.
  printf '%-32s %-24s %-24s %s\n' "nofile (open files)" "$nofile" "$want_nofile" "$(lim_status "$nofile" "$want_nofile")"
  printf '%-32s %-24s %-24s %s\n' "memlock (KiB, io_uring)" "$memlock" "$want_memlock" "$(lim_status "$memlock" "$want_memlock")"
  if [[ -f "$LIMITS_DST" ]] && cmp -s "$LIMITS_SRC" "$LIMITS_DST"; then
    echo "$LIMITS_DST is installed (applies to new login sessions)"
  else
    echo "$LIMITS_DST is not installed (PAM sessions); systemd services use tuning/ringgate.service instead"
  fi
}

run_check() {
  local bin=""
  if command -v ringgate >/dev/null 2>&1; then bin="$(command -v ringgate)"
  elif [[ -x "$HERE/../target/release/ringgate" ]]; then bin="$HERE/../target/release/ringgate"; fi
  echo
  if [[ -n "$bin" ]]; then
    echo "ringgate check ($bin):"
    "$bin" check || echo "(ringgate check reported problems; see above)"
  else
    echo "ringgate is not built here; run 'ringgate check' on the host to confirm io_uring, memlock, nofile, somaxconn and CPUs."
  fi
}

echo "ringgate tuning profile: $SYSCTL_SRC, $LIMITS_SRC"
echo "host: $(uname -sr), $(nproc) CPUs"
echo
report
limits_report

if ((!APPLY)); then
  echo
  if ((${#TODO[@]} == 0)); then
    echo "dry run: every sysctl already matches the profile."
  else
    echo "dry run: ${#TODO[@]} sysctl(s) differ; nothing was changed. To apply:"
    echo "  sudo $0 --apply"
    echo "which installs $SYSCTL_DST and $LIMITS_DST and runs:"
    printf "  sysctl -w '%s'\n" "${TODO[@]}"
  fi
  run_check
  if ((${#TODO[@]} == 0)); then exit 0; else exit 1; fi
fi

# ---------------------------------------------------------------- --apply
[[ "$(id -u)" == 0 ]] || { echo "--apply needs root: sudo $0 --apply" >&2; exit 1; }

echo
echo "applying:"
# The boot-time file gets the values set now (a higher current value is kept there too).
{
  echo "# Installed by ringgate tuning/apply.sh from $SYSCTL_SRC on $(date -u +%Y-%m-%dT%H:%M:%SZ)."
  echo "# Values already higher on this host than the profile were kept. See tuning/README.md."
  while IFS=$'\t' read -r key want; do
    st="$(status "$key" "$(current_sysctl "$key")" "$want")"
    case "$st" in
      absent) ;;
      better) echo "$key = $(current_sysctl "$key")" ;;
      ok) echo "$key = $want" ;;
      *) echo "$key = ${st#change }" ;;
    esac
  done < <(profile_sysctls)
} >"$SYSCTL_DST.tmp" && chmod 0644 "$SYSCTL_DST.tmp" && mv "$SYSCTL_DST.tmp" "$SYSCTL_DST" \
  && echo "  installed $SYSCTL_DST (loaded at every boot)"
if [[ -d "$(dirname "$LIMITS_DST")" ]]; then
  install -m 0644 "$LIMITS_SRC" "$LIMITS_DST" && echo "  installed $LIMITS_DST (new login sessions)"
else
  echo "  $(dirname "$LIMITS_DST") does not exist (no pam_limits); skipped limits.conf"
fi
for kv in "${TODO[@]}"; do
  # fs.nr_open before anything that raises RLIMIT_NOFILE; order follows sysctl.conf.
  if sysctl -q -w "$kv" >/dev/null 2>&1; then
    echo "  set $kv"
  else
    echo "  FAILED to set $kv (read-only /proc/sys, e.g. in a container? set it on the host)"
  fi
done

echo
echo "verifying (read back from /proc/sys):"
report
if ((${#TODO[@]} > 0)); then
  echo
  echo "NOT applied: ${TODO[*]}"
  run_check
  exit 1
fi
echo
echo "every sysctl matches the profile. Limits: log in again (limits.conf) or restart the"
echo "service (LimitNOFILE / LimitMEMLOCK in ringgate.service) for nofile and memlock to change."
run_check
