#!/usr/bin/env bash
# Map the federation test domains to their loopback addresses in /etc/hosts.
#
#   hosts.sh          add the mapping (as root); running it again changes nothing
#   hosts.sh install  the same, but only warn (exit 0) when it cannot write the file: the
#                     federation tests against ejabberd and Prosody then skip with a message
#   hosts.sh check    exit 0 when every name resolves to its address here, 1 otherwise
#
# The federation tests run three servers on the standard ports, each on its own loopback address:
# ejabberd (127.0.0.2), Prosody (127.0.0.3) and xmppcore (127.0.0.4). There is no DNS server for
# the .test names (RFC 2606 §2), so each server finds its peers' s2s listeners (port 5269) through
# /etc/hosts, after its SRV lookup finds nothing (RFC 6120 §3.2.2).
set -euo pipefail

HOSTS_FILE="${HOSTS_FILE:-/etc/hosts}"
MARKER="# xmppcore federation tests"
ENTRIES=(
    "127.0.0.2 ejabberd.test muc.ejabberd.test"
    "127.0.0.3 prosody.test muc.prosody.test"
    "127.0.0.4 xmppcore.test muc.xmppcore.test"
)

mapped() {  # does $HOSTS_FILE map name $2 to address $1 (first match wins, as resolvers read it)?
    awk -v addr="$1" -v name="$2" '
        { sub(/#.*/, "") }
        { for (i = 2; i <= NF; i++) if ($i == name) { print ($1 == addr) ? "yes" : "no"; exit } }
    ' "$HOSTS_FILE" | grep -qx yes
}

missing() {  # print "address name" for each name not mapped to its address
    local entry address names name
    for entry in "${ENTRIES[@]}"; do
        read -r address names <<<"$entry"
        for name in $names; do
            mapped "$address" "$name" || echo "$address $name"
        done
    done
}

check() {
    local gaps
    gaps=$(missing)
    if [ -z "$gaps" ]; then
        echo "hosts.sh: $HOSTS_FILE maps the federation test domains"
        return 0
    fi
    echo "hosts.sh: $HOSTS_FILE lacks these mappings (run: sudo bash $0):" >&2
    sed 's/^/  /' <<<"$gaps" >&2
    return 1
}

add() {
    if [ -z "$(missing)" ]; then
        echo "hosts.sh: $HOSTS_FILE already maps the federation test domains"
        return 0
    fi
    if [ ! -w "$HOSTS_FILE" ]; then
        echo "hosts.sh: cannot write $HOSTS_FILE (it needs root: sudo bash $0); the federation" \
             "tests need ejabberd.test, prosody.test and xmppcore.test on 127.0.0.2-4" >&2
        return 1
    fi
    # A name mapped elsewhere is left alone but reported: the first line for a name wins, so
    # appending would not fix it, and rewriting someone else's line is not ours to do.
    local entry address names name conflicts=""
    for entry in "${ENTRIES[@]}"; do
        read -r address names <<<"$entry"
        for name in $names; do
            if ! mapped "$address" "$name" && grep -Eq "^[^#]*[[:space:]]$name([[:space:]]|$)" "$HOSTS_FILE"; then
                conflicts+="  $name (wanted $address)"$'\n'
            fi
        done
    done
    if [ -n "$conflicts" ]; then
        printf 'hosts.sh: %s already maps these names to other addresses; fix them by hand:\n%s' \
            "$HOSTS_FILE" "$conflicts" >&2
        return 1
    fi
    # One line per address with the names it still lacks.
    { echo "$MARKER"; missing | awk '{ names[$1] = names[$1] " " $2 } END { for (a in names) print a names[a] }' | sort; } \
        >> "$HOSTS_FILE"
    check
}

case "${1:-add}" in
    add) add ;;
    install)
        if [ -n "$(missing)" ] && [ ! -w "$HOSTS_FILE" ]; then
            echo "hosts.sh: cannot write $HOSTS_FILE without root; the federation tests against" \
                 "ejabberd and Prosody will be skipped (run: sudo bash $0)" >&2
            exit 0
        fi
        add ;;
    check) check ;;
    *) sed -n '2,7p' "$0" >&2; exit 2 ;;
esac
