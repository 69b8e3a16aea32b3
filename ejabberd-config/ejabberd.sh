#!/usr/bin/env bash
# Start and stop the reference ejabberd for the conformance suite, from Debian's package,
# on 127.0.0.2 without a system service (see README.md here and ../../shared/refs/NOTES.md).
#
#   ejabberd.sh install   apt-get install ejabberd erlang-p1-sqlite3 (as root), if missing
#   ejabberd.sh start     lay out the run directory, start, wait until it answers, register accounts
#   ejabberd.sh stop      stop it
#   ejabberd.sh status    exit 0 when it runs and accepts clients on 127.0.0.2:5222
#   ejabberd.sh certfile  print the path of its (self-signed) certificate, to verify TLS against
#   ejabberd.sh docker-config  write docker/ejabberd.yml for docker-compose.yml (official image)
#
# EJABBERD_RUN_DIR (default /tmp/xmppcore-ejabberd) holds config, spool, logs and the certificate.
set -euo pipefail

HERE="$(cd "$(dirname "$0")" && pwd)"
RUN_DIR="${EJABBERD_RUN_DIR:-/tmp/xmppcore-ejabberd}"
DOMAIN="ejabberd.test"
ADDRESS="127.0.0.2"
ACCOUNTS=(alice bob carol)
PASSWORD="conformance-secret"
export ERL_INETRC="$RUN_DIR/config/inetrc"

ctl() {
    ejabberdctl --config-dir "$RUN_DIR/config" --spool "$RUN_DIR/spool" --logs "$RUN_DIR/logs" "$@"
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

render() {  # the config with its run directory and listening address filled in
    sed -e "s|@RUN_DIR@|$1|g" -e "s|@ADDRESS@|$2|g" "$HERE/ejabberd.yml"
}

make_certificate() {  # a self-signed certificate for $DOMAIN in directory $1
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 825 \
        -subj "/CN=$DOMAIN" -addext "subjectAltName=DNS:$DOMAIN" \
        -keyout "$1/key.pem" -out "$1/cert.pem" 2>/dev/null
    cat "$1/cert.pem" "$1/key.pem" > "$1/ejabberd.pem"
}

layout() {
    mkdir -p "$RUN_DIR/config" "$RUN_DIR/spool" "$RUN_DIR/logs"
    render "$RUN_DIR" "$ADDRESS" > "$RUN_DIR/config/ejabberd.yml"
    cp "$HERE/ejabberdctl.cfg" "$HERE/inetrc" "$RUN_DIR/config/"
    [ -s "$RUN_DIR/ejabberd.pem" ] || make_certificate "$RUN_DIR"
    # As root, ejabberdctl runs the node as user 'ejabberd': it must own its run directory.
    if [ "$(id -u)" = 0 ]; then
        chown -R ejabberd:ejabberd "$RUN_DIR"
        chmod 0640 "$RUN_DIR/ejabberd.pem" "$RUN_DIR/key.pem"
    fi
}

start() {
    command -v ejabberdctl >/dev/null || { echo "ejabberd.sh: ejabberdctl not found; run '$0 install'" >&2; exit 2; }
    if ctl status >/dev/null 2>&1 && accepting; then
        register_accounts
        return 0
    fi
    # Every start begins from an empty database, so no run inherits rosters, offline messages
    # or blocks that an earlier (perhaps interrupted) run left behind.
    rm -rf "$RUN_DIR/spool"
    layout
    ctl start
    # 'started' blocks until the node is up (about 5 s); the listener follows right after.
    timeout 60 bash -c "$(declare -f ctl); export ERL_INETRC='$ERL_INETRC'; RUN_DIR='$RUN_DIR'; ctl started"
    for _ in $(seq 1 100); do accepting && break; python3 -c 'import time; time.sleep(0.1)'; done
    accepting || { echo "ejabberd.sh: ejabberd did not open $ADDRESS:5222; see $RUN_DIR/logs" >&2; exit 1; }
    register_accounts
    echo "ejabberd.sh: ejabberd serves $DOMAIN on $ADDRESS:5222 (STARTTLS) and :5223 (direct TLS)"
}

register_accounts() {
    for user in "${ACCOUNTS[@]}"; do
        out=$(ctl register "$user" "$DOMAIN" "$PASSWORD" 2>&1) || case "$out" in
            *"already registered"*|*"conflict"*) ;;
            *) echo "ejabberd.sh: registering $user failed: $out" >&2; exit 1 ;;
        esac
    done
}

case "${1:-}" in
    install)
        # erlang-p1-sqlite3: ejabberd's SQLite driver, for its archive in bench/compare.py's msgmam.
        if command -v ejabberdctl >/dev/null && dpkg -s erlang-p1-sqlite3 >/dev/null 2>&1; then exit 0; fi
        if [ "$(id -u)" != 0 ]; then
            echo "ejabberd.sh: ejabberd is not installed and installing it needs root; the conformance" \
                 "tests against it will be skipped (run: sudo bash $0 install)" >&2
            exit 0
        fi
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq ejabberd erlang-p1-sqlite3 >/dev/null ;;
    start) start ;;
    stop) ctl stop >/dev/null 2>&1 || true; timeout 30 bash -c "$(declare -f ctl); export ERL_INETRC='$ERL_INETRC'; RUN_DIR='$RUN_DIR'; ctl stopped" >/dev/null 2>&1 || true ;;
    status) ctl status >/dev/null 2>&1 && accepting ;;
    certfile) echo "$RUN_DIR/cert.pem" ;;
    docker-config)
        # For docker-compose.yml: the same config for the official image, listening on all
        # addresses inside the container, with its certificate beside it in ./docker/.
        mkdir -p "$HERE/docker"
        render /opt/ejabberd/conf "::" > "$HERE/docker/ejabberd.yml"
        [ -s "$HERE/docker/ejabberd.pem" ] || make_certificate "$HERE/docker"
        echo "ejabberd.sh: wrote $HERE/docker/ejabberd.yml; now: docker compose up -d" ;;
    *) sed -n '2,14p' "$0" >&2; exit 2 ;;
esac
