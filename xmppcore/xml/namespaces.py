"""XML namespace names used across the protocol core (RFC 6120, RFC 6121 and the XEPs)."""

__all__ = [
    "NS_XML", "NS_STREAMS", "NS_CLIENT", "NS_SERVER", "NS_COMPONENT", "NS_STREAM_ERRORS",
    "NS_STANZA_ERRORS", "NS_TLS", "NS_SASL", "NS_BIND", "NS_SESSION", "NS_SASL_CB",
    "NS_DISCO_INFO", "NS_DISCO_ITEMS", "NS_PING", "NS_VERSION", "NS_TIME", "NS_ROSTER",
    "NS_DIALBACK", "NS_DIALBACK_FEATURE", "NS_BIDI", "NS_BIDI_FEATURE",
]

NS_XML = "http://www.w3.org/XML/1998/namespace"
NS_STREAMS = "http://etherx.jabber.org/streams"
NS_CLIENT = "jabber:client"
NS_SERVER = "jabber:server"
NS_COMPONENT = "jabber:component:accept"
NS_STREAM_ERRORS = "urn:ietf:params:xml:ns:xmpp-streams"
NS_STANZA_ERRORS = "urn:ietf:params:xml:ns:xmpp-stanzas"
NS_TLS = "urn:ietf:params:xml:ns:xmpp-tls"
NS_SASL = "urn:ietf:params:xml:ns:xmpp-sasl"
NS_BIND = "urn:ietf:params:xml:ns:xmpp-bind"
NS_SESSION = "urn:ietf:params:xml:ns:xmpp-session"
NS_SASL_CB = "urn:xmpp:sasl-cb:0"  # XEP-0440
NS_DIALBACK = "jabber:server:dialback"              # XEP-0220, written with the "db:" prefix
NS_DIALBACK_FEATURE = "urn:xmpp:features:dialback"  # XEP-0220 §2.4.1
NS_BIDI = "urn:xmpp:bidi"                           # XEP-0288
NS_BIDI_FEATURE = "urn:xmpp:features:bidi"
NS_DISCO_INFO = "http://jabber.org/protocol/disco#info"
NS_DISCO_ITEMS = "http://jabber.org/protocol/disco#items"
NS_PING = "urn:xmpp:ping"
NS_VERSION = "jabber:iq:version"
NS_TIME = "urn:xmpp:time"
NS_ROSTER = "jabber:iq:roster"
