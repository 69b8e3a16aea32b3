-- The reference Prosody the federation tests run against (Prosody 0.12 from Debian).
-- Configured like the reference ejabberd (../ejabberd-config/): its own loopback address, the
-- standard ports, only what the tests need, no traffic shaping, accounts made by prosody.sh.
-- prosody.sh fills in @RUN_DIR@ (config, data, logs, pid, certificate) and @LOG_LEVEL@.

pidfile = "@RUN_DIR@/prosody.pid"
data_path = "@RUN_DIR@/data"
log = {
	@LOG_LEVEL@ = "@RUN_DIR@/logs/prosody.log";
	error = "@RUN_DIR@/logs/prosody.err";
}
-- prosody.sh starts it through prosodyctl, not through a service manager.
prosodyctl_service_warnings = false

-- Its own loopback address, so the standard ports stay free for ejabberd (127.0.0.2) and
-- xmppcore (127.0.0.4); peers find it through /etc/hosts (../federation-config/hosts.sh).
interfaces = { "127.0.0.3" }
local_interfaces = { "127.0.0.3" }
c2s_ports = { 5222 }
s2s_ports = { 5269 }
-- Prosody resolves through libunbound, which ignores /etc/hosts unless told otherwise: the
-- peers' .test names exist nowhere else (RFC 2606 §2).
unbound = { hoststxt = true }
-- Nagle's algorithm makes loopback round trips 40-50 ms instead of about 2 ms.
network_settings = { nagle = false }

-- Autoloaded without being listed: c2s, s2s, iq, message, presence, offline, posix.
modules_enabled = {
	"roster";    -- RFC 6121 §2
	"saslauth";  -- RFC 6120 §6
	"tls";       -- RFC 6120 §5, for c2s and s2s
	"dialback";  -- XEP-0220: how the self-signed peers authenticate each other
	"s2s_bidi";  -- XEP-0288, offered and used only when the peer supports it too
	"disco";     -- XEP-0030
	"ping";      -- XEP-0199
}
-- mod_limits is not loaded: Debian's default throttles clients to 10 kB/s.

authentication = "internal_hashed"
storage = "internal"

c2s_require_encryption = true
s2s_require_encryption = true
-- The peers' certificates are self-signed: accept their identity through dialback instead of
-- demanding a certificate a trusted CA signed (RFC 6120 §13.7.2.3; XEP-0220 §1).
s2s_secure_auth = false

VirtualHost "prosody.test"
	ssl = {
		certificate = "@RUN_DIR@/certs/prosody.test.crt";
		key = "@RUN_DIR@/certs/prosody.test.key";
	}

-- XEP-0045 Multi-User Chat, for the group-chat bot tests (tests/bots/test_groupchat.py).
-- Anyone may create a room, local users and users of other servers alike: room creation is not
-- restricted. Rooms stay locked after creation, as XEP-0045 §10.1.1 says, until their owner
-- submits a configuration (an empty one makes an instant room, §10.1.2); rooms are temporary.
-- Other servers reach muc.prosody.test through /etc/hosts (127.0.0.3) like prosody.test, and
-- authenticate it with dialback over TLS with the host's certificate.
Component "muc.prosody.test" "muc"
	restrict_room_creation = false
	ssl = {
		certificate = "@RUN_DIR@/certs/prosody.test.crt";
		key = "@RUN_DIR@/certs/prosody.test.key";
	}
