#!/usr/bin/env bash
# Start and stop the reference Prosody for the federation tests, from Debian's package,
# on 127.0.0.3 without a system service (see README.md here and ../../shared/refs/NOTES.md).
#
#   prosody.sh install              apt-get install prosody lua-dbi-sqlite3 (as root), if missing
#   prosody.sh start                empty data directory, accounts, start, wait until it accepts clients
#   prosody.sh stop                 stop it
#   prosody.sh status               exit 0 when it runs and accepts clients on 127.0.0.3:5222
#   prosody.sh adduser USER PASSWORD  create (or reset) an account on prosody.test
#   prosody.sh certfile             print the path of its (self-signed) certificate, to verify TLS against
#
# PROSODY_RUN_DIR (default /tmp/xmppcore-prosody) holds config, data, logs, pid and certificate;
# PROSODY_LOG_LEVEL (default info; debug shows every stanza) sets what logs/prosody.log gets.
set -euo pipefail

HERE="$(cd "$(dirname "$0")" && pwd)"
RUN_DIR="${PROSODY_RUN_DIR:-/tmp/xmppcore-prosody}"
LOG_LEVEL="${PROSODY_LOG_LEVEL:-info}"
DOMAIN="prosody.test"
ADDRESS="127.0.0.3"
ACCOUNTS=(alice bob)
PASSWORD="federation-secret"
CONFIG="$RUN_DIR/prosody.cfg.lua"

ctl() {
    prosodyctl --config "$CONFIG" "$@"
}

accepting() {
    python3 - "$ADDRESS" <<'PY'
import socket, sys
try:
    socket.create_connection((sys.argv[1], 5222), timeout=2).close()
except OSError:
    sys.exit(1)
PY
}

running() {  # our Prosody (the one whose pid file is in $RUN_DIR) is running
    [ -f "$CONFIG" ] && ctl status >/dev/null 2>&1
}

make_certificate() {  # a self-signed certificate for $DOMAIN in directory $1
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 825 \
        -subj "/CN=$DOMAIN" -addext "subjectAltName=DNS:$DOMAIN" \
        -keyout "$1/$DOMAIN.key" -out "$1/$DOMAIN.crt" 2>/dev/null
}

layout() {
    mkdir -p "$RUN_DIR/certs" "$RUN_DIR/data" "$RUN_DIR/logs"
    sed -e "s|@RUN_DIR@|$RUN_DIR|g" -e "s|@LOG_LEVEL@|$LOG_LEVEL|g" "$HERE/prosody.cfg.lua" > "$CONFIG"
    [ -s "$RUN_DIR/certs/$DOMAIN.crt" ] || make_certificate "$RUN_DIR/certs"
    # As root, prosodyctl and Prosody switch to user 'prosody', which must own what they write
    # and be able to read the key.
    if [ "$(id -u)" = 0 ]; then
        chown -R prosody:prosody "$RUN_DIR"
        chmod 0640 "$RUN_DIR/certs/$DOMAIN.key"
    fi
}

adduser() {  # internal storage is files, so this works whether or not Prosody runs
    ctl register "$1" "$DOMAIN" "$2" >/dev/null
}

start() {
    command -v prosodyctl >/dev/null || { echo "prosody.sh: prosodyctl not found; run '$0 install'" >&2; exit 2; }
    if running && accepting; then
        for user in "${ACCOUNTS[@]}"; do adduser "$user" "$PASSWORD"; done
        return 0
    fi
    if accepting; then
        echo "prosody.sh: something else listens on $ADDRESS:5222 (a system Prosody on '*'?" \
             "stop it: systemctl disable --now prosody)" >&2
        exit 1
    fi
    # Every start begins from an empty data directory, so no run inherits accounts, rosters or
    # offline messages that an earlier (perhaps interrupted) run left behind.
    rm -rf "$RUN_DIR/data"
    layout
    for user in "${ACCOUNTS[@]}"; do adduser "$user" "$PASSWORD"; done
    ctl start >/dev/null
    for _ in $(seq 1 100); do accepting && break; python3 -c 'import time; time.sleep(0.1)'; done
    accepting || { echo "prosody.sh: Prosody did not open $ADDRESS:5222; see $RUN_DIR/logs" >&2; exit 1; }
    echo "prosody.sh: Prosody serves $DOMAIN on $ADDRESS:5222 (STARTTLS) and :5269 (s2s)"
}

stop() {
    running || return 0
    ctl stop >/dev/null 2>&1 || true
}

case "${1:-}" in
    install)
        # lua-dbi-sqlite3: Prosody's SQLite storage, for its archive in bench/compare.py's msgmam.
        if command -v prosodyctl >/dev/null && dpkg -s lua-dbi-sqlite3 >/dev/null 2>&1; then exit 0; fi
        if [ "$(id -u)" != 0 ]; then
            echo "prosody.sh: Prosody is not installed and installing it needs root; the federation" \
                 "tests against it will be skipped (run: sudo bash $0 install)" >&2
            exit 0
        fi
        # With Recommends: lua-unbound is how Prosody resolves s2s peers.
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq prosody lua-dbi-sqlite3 >/dev/null ;;
    start) start ;;
    stop) stop ;;
    status) running && accepting ;;
    adduser)
        [ $# = 3 ] || { echo "usage: $0 adduser USER PASSWORD" >&2; exit 2; }
        [ -f "$CONFIG" ] || layout
        adduser "$2" "$3" ;;
    certfile) echo "$RUN_DIR/certs/$DOMAIN.crt" ;;
    *) sed -n '2,15p' "$0" >&2; exit 2 ;;
esac
