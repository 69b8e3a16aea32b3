-- Prosody 0.12 (Debian's package) as the benchmark of bench/compare.py measures it: configured
-- like xmppcore's benchmark configuration (bench/msg_mam.py bench_config). Not the federation
-- Prosody (prosody-config/, 127.0.0.3, prosody.test): its own address, port, domain and run
-- directory, so both can run at once.
-- bench/refservers.py fills in the run directory, address, port and domain, and the two
-- placeholders below that differ with archiving on and off.

pidfile = "@RUN_DIR@/prosody.pid"
data_path = "@RUN_DIR@/data"
log = {
	warn = "@RUN_DIR@/logs/prosody.log";
	error = "@RUN_DIR@/logs/prosody.err";
}
prosodyctl_service_warnings = false

-- Plaintext c2s on loopback only; no s2s listener, no HTTP.
interfaces = { "@ADDRESS@" }
local_interfaces = { "@ADDRESS@" }
c2s_ports = { @PORT@ }
s2s_ports = { }
c2s_require_encryption = false
-- TCP_NODELAY: with Nagle on (the default) a loopback round trip waits 40 ms for delayed ACKs.
-- A listen backlog of 1024 (default 128), as ejabberd's and xmppcore's.
network_settings = { nagle = false; tcp_backlog = 1024 }

-- The counterparts of xmppcore's default modules (disco ping version time presence message
-- blocking roster vcard private last offline carbons mam csi; stream management is on).
-- Autoloaded without being listed: c2s, iq, message, presence, offline, posix.
-- Not loaded: "tls" (nothing to offer on plaintext loopback) and "limits" (Debian's default
-- config loads it and throttles each client to 10 kB/s).
modules_enabled = {
	"roster"; "saslauth"; "disco"; "ping"; "time"; "version"; "blocklist"; "vcard"; "private";
	"lastactivity"; "carbons"; "csi_simple"; "smacks"; "register";
	@MAM_MODULE@
}
modules_disabled = { "s2s" }

-- SCRAM-SHA-1 keys (the only hash 0.12 stores), 4096 iterations as ejabberd's and xmppcore's
-- benchmark accounts (Prosody's default is 10000).
authentication = "internal_hashed"
default_iteration_count = 4096

-- In-band registration (XEP-0077) is how bench/provision.py creates the accounts. With
-- min_seconds_between_registrations unset mod_register_limits has no throttle at all (setting it
-- to 0 would make a throttle of one registration per 0 s).
allow_registration = true

@STORAGE@

VirtualHost "@DOMAIN@"
