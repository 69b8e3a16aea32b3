"""RFC 5802 / RFC 7677 SCRAM: test vectors, client <-> server exchanges, refusals and fuzzing."""

from __future__ import annotations

import base64
import functools
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from xmppcore.protocol.sasl import (
    SCRAM_HASHES, ScramClient, ScramCredentials, ScramServer, derive_scram_credentials,
    mechanism_name, parse_mechanism, prepare_password,
)
from xmppcore.stanza.errors import ProtocolUsageError, SaslCondition, SaslFailure

EXPORTER = bytes(range(32))  # stands in for RFC 9266 tls-exporter output
SALT = b"0123456789abcdef"


@functools.cache
def creds(hash_name: str, password: str = "pencil") -> ScramCredentials:
    return derive_scram_credentials(password, hash_name, salt=SALT, iterations=4096)


def make_server(hash_name: str = "sha-256", *, plus: bool = False, nonce: str = "SERVERnonce",
                bindings: dict[str, bytes] | None = None, plus_advertised: bool = False,
                **extra: Any) -> ScramServer:
    return ScramServer(hash_name, plus=plus, server_nonce=nonce, channel_bindings=bindings or {},
                       plus_advertised=plus_advertised, **extra)


def make_client(hash_name: str = "sha-256", **kwargs: Any) -> ScramClient:
    args: dict[str, Any] = {"username": "user", "password": "pencil", "client_nonce": "CLIENTnonce"}
    args.update(kwargs)
    return ScramClient(hash_name, **args)


def exchange(client: ScramClient, server: ScramServer, credentials: ScramCredentials | None) -> bytes:
    """Run a whole exchange (raising on any refusal); return the client-first-message."""
    client_first = client.client_first()
    server.receive_client_first(client_first)
    client_final = client.receive_server_first(server.server_first(credentials))
    client.receive_server_final(server.receive_client_final(client_final))
    return client_first


def refusal(excinfo: pytest.ExceptionInfo[SaslFailure]) -> SaslCondition:
    return excinfo.value.condition


# -- mechanism names ------------------------------------------------------------------------------

@pytest.mark.parametrize(("name", "parsed"), [
    ("SCRAM-SHA-1", ("sha-1", False)),
    ("SCRAM-SHA-1-PLUS", ("sha-1", True)),
    ("SCRAM-SHA-256", ("sha-256", False)),
    ("SCRAM-SHA-256-PLUS", ("sha-256", True)),
    ("SCRAM-SHA-512", None),
    ("scram-sha-1", None),
    ("PLAIN", None),
    ("SCRAM-SHA-1-PLUSX", None),
])
def test_mechanism_names_round_trip(name: str, parsed: tuple[str, bool] | None) -> None:
    assert parse_mechanism(name) == parsed
    if parsed is not None:
        assert mechanism_name(*parsed) == name


def test_mechanism_name_refuses_unknown_hash() -> None:
    with pytest.raises(ValueError):
        mechanism_name("md5", False)


# -- RFC test vectors -----------------------------------------------------------------------------

@dataclass(frozen=True)
class Vector:
    client_nonce: str
    server_nonce: str
    salt: str
    client_first: bytes
    server_first: bytes
    client_final: bytes
    server_final: bytes


VECTORS = {
    # RFC 5802 §5
    "sha-1": Vector(
        client_nonce="fyko+d2lbbFgONRv9qkxdawL", server_nonce="3rfcNHYJY1ZVvWVs7j",
        salt="QSXCR+Q6sek8bf92",
        client_first=b"n,,n=user,r=fyko+d2lbbFgONRv9qkxdawL",
        server_first=b"r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,s=QSXCR+Q6sek8bf92,i=4096",
        client_final=b"c=biws,r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,p=v0X8v3Bz2T0CJGbJQyF0X+HI4Ts=",
        server_final=b"v=rmF9pqV8S7suAoZWja4dJRkFsKQ=",
    ),
    # RFC 7677 §3
    "sha-256": Vector(
        client_nonce="rOprNGfwEbeRWgbNEkqO", server_nonce="%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0",
        salt="W22ZaJ0SNY7soEsUEjb6gQ==",
        client_first=b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO",
        server_first=b"r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,"
                     b"s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096",
        client_final=b"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,"
                     b"p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=",
        server_final=b"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=",
    ),
}


@pytest.mark.parametrize("hash_name", SCRAM_HASHES)
def test_client_reproduces_rfc_vector(hash_name: str) -> None:
    vector = VECTORS[hash_name]
    client = make_client(hash_name, client_nonce=vector.client_nonce)
    assert client.client_first() == vector.client_first
    assert client.receive_server_first(vector.server_first) == vector.client_final
    client.receive_server_final(vector.server_final)


@pytest.mark.parametrize("hash_name", SCRAM_HASHES)
def test_server_reproduces_rfc_vector(hash_name: str) -> None:
    vector = VECTORS[hash_name]
    credentials = derive_scram_credentials(
        "pencil", hash_name, salt=base64.b64decode(vector.salt), iterations=4096)
    server = make_server(hash_name, nonce=vector.server_nonce)
    assert server.receive_client_first(vector.client_first) == "user"
    assert server.authzid is None
    assert server.server_first(credentials) == vector.server_first
    assert server.receive_client_final(vector.client_final) == vector.server_final


# -- full exchanges and channel binding -----------------------------------------------------------

@pytest.mark.parametrize("hash_name", SCRAM_HASHES)
def test_exchange_without_channel_binding(hash_name: str) -> None:
    client = make_client(hash_name)
    server = make_server(hash_name)
    assert exchange(client, server, creds(hash_name)).startswith(b"n,,")
    assert server.username == "user"


@pytest.mark.parametrize("hash_name", SCRAM_HASHES)
def test_exchange_with_tls_exporter_binding(hash_name: str) -> None:
    client = make_client(hash_name, channel_binding=("tls-exporter", EXPORTER), plus=True,
                         server_supports_plus=True)
    server = make_server(hash_name, plus=True, bindings={"tls-exporter": EXPORTER}, plus_advertised=True)
    assert client.mechanism == mechanism_name(hash_name, True)
    first = client.client_first()
    assert first.startswith(b"p=tls-exporter,,")
    server.receive_client_first(first)
    client_final = client.receive_server_first(server.server_first(creds(hash_name)))
    # RFC 5802 §5.1 c=: base64 of the GS2 header followed by the binding data
    c_value = client_final.split(b",")[0][2:]
    assert base64.b64decode(c_value) == b"p=tls-exporter,," + EXPORTER
    client.receive_server_final(server.receive_client_final(client_final))


def test_client_with_binding_but_no_plus_offer_says_y_and_succeeds() -> None:
    client = make_client(channel_binding=("tls-exporter", EXPORTER), server_supports_plus=False)
    server = make_server(bindings={"tls-exporter": EXPORTER}, plus_advertised=False)
    assert exchange(client, server, creds("sha-256")).startswith(b"y,,")


def test_client_with_binding_and_plus_offer_but_not_using_it_says_n() -> None:
    client = make_client(channel_binding=("tls-exporter", EXPORTER), server_supports_plus=True)
    assert client.client_first().startswith(b"n,,")


def test_y_flag_is_refused_when_plus_was_advertised() -> None:
    # RFC 5802 §6: someone stripped the -PLUS mechanisms from our offer.
    client = make_client(channel_binding=("tls-exporter", EXPORTER), server_supports_plus=False)
    server = make_server(bindings={"tls-exporter": EXPORTER}, plus_advertised=True)
    with pytest.raises(SaslFailure) as excinfo:
        server.receive_client_first(client.client_first())
    assert refusal(excinfo) is SaslCondition.NOT_AUTHORIZED


@pytest.mark.parametrize(("message", "plus", "bindings"), [
    (b"p=tls-exporter,,n=user,r=abc", False, {"tls-exporter": EXPORTER}),   # p= with non-PLUS
    (b"n,,n=user,r=abc", True, {"tls-exporter": EXPORTER}),                 # n with PLUS
    (b"y,,n=user,r=abc", True, {"tls-exporter": EXPORTER}),                 # y with PLUS
    (b"p=tls-unique,,n=user,r=abc", True, {"tls-exporter": EXPORTER}),      # type not available
    (b"p=tls-exporter,,n=user,r=abc", True, {}),                            # no TLS at all
])
def test_channel_binding_flag_mismatches_are_refused(
        message: bytes, plus: bool, bindings: dict[str, bytes]) -> None:
    server = make_server(plus=plus, bindings=bindings, plus_advertised=True)
    with pytest.raises(SaslFailure) as excinfo:
        server.receive_client_first(message)
    assert refusal(excinfo) is SaslCondition.NOT_AUTHORIZED


def test_wrong_channel_binding_data_is_refused() -> None:
    client = make_client(channel_binding=("tls-exporter", b"A" * 32), plus=True)
    server = make_server(plus=True, bindings={"tls-exporter": b"B" * 32}, plus_advertised=True)
    server.receive_client_first(client.client_first())
    client_final = client.receive_server_first(server.server_first(creds("sha-256")))
    with pytest.raises(SaslFailure) as excinfo:
        server.receive_client_final(client_final)
    assert refusal(excinfo) is SaslCondition.NOT_AUTHORIZED


def test_c_attribute_not_matching_the_gs2_header_is_refused() -> None:
    # The client said "n" at first but claims "y" in c=: the header must be repeated verbatim.
    server = make_server()
    server.receive_client_first(b"n,,n=user,r=abc")
    server.server_first(creds("sha-256"))
    with pytest.raises(SaslFailure) as excinfo:
        server.receive_client_final(b"c=eSws,r=abcSERVERnonce,p=AAAA")
    assert refusal(excinfo) is SaslCondition.NOT_AUTHORIZED


# -- wrong password, unknown user, nonce ----------------------------------------------------------

@pytest.mark.parametrize("hash_name", SCRAM_HASHES)
def test_wrong_password_is_refused_and_ends_the_exchange(hash_name: str) -> None:
    client = make_client(hash_name, password="pencil2")
    server = make_server(hash_name)
    server.receive_client_first(client.client_first())
    client_final = client.receive_server_first(server.server_first(creds(hash_name)))
    with pytest.raises(SaslFailure) as excinfo:
        server.receive_client_final(client_final)
    assert refusal(excinfo) is SaslCondition.NOT_AUTHORIZED
    with pytest.raises(ProtocolUsageError):
        server.receive_client_final(client_final)


def _fake_challenge(username: str, nonce: str, key: bytes = b"") -> dict[str, str]:
    server = make_server(nonce=nonce, unknown_user_key=key)
    server.receive_client_first(f"n,,n={username},r=abc".encode())
    return {part[0]: part[2:] for part in server.server_first(None).decode().split(",")}


def test_unknown_user_gets_a_plausible_stable_challenge_then_fails() -> None:
    first = _fake_challenge("ghost", "nonceA")
    again = _fake_challenge("ghost", "nonceB")
    assert first["r"] == "abcnonceA" and again["r"] == "abcnonceB"
    assert first["s"] == again["s"]                            # probing twice reveals nothing
    assert len(base64.b64decode(first["s"])) == len(SALT)      # same shape as a real salt
    assert first["i"] == "4096"
    assert _fake_challenge("other", "nonceA")["s"] != first["s"]
    assert _fake_challenge("ghost", "nonceA", key=b"secret")["s"] != first["s"]

    client = make_client(username="ghost")
    server = make_server()
    server.receive_client_first(client.client_first())
    client_final = client.receive_server_first(server.server_first(None))
    with pytest.raises(SaslFailure) as excinfo:
        server.receive_client_final(client_final)
    assert refusal(excinfo) is SaslCondition.NOT_AUTHORIZED


def test_nonce_mismatch_in_client_final_is_refused() -> None:
    client = make_client()
    server = make_server()
    server.receive_client_first(client.client_first())
    client_final = client.receive_server_first(server.server_first(creds("sha-256")))
    tampered = client_final.replace(b"SERVERnonce", b"SERVERnoncX")
    with pytest.raises(SaslFailure) as excinfo:
        server.receive_client_final(tampered)
    assert refusal(excinfo) is SaslCondition.NOT_AUTHORIZED


def test_credentials_for_another_hash_are_our_bug() -> None:
    server = make_server("sha-256")
    server.receive_client_first(b"n,,n=user,r=abc")
    with pytest.raises(ProtocolUsageError):
        server.server_first(creds("sha-1"))


def test_calls_out_of_order_are_our_bug() -> None:
    server = make_server()
    with pytest.raises(ProtocolUsageError):
        server.server_first(None)
    with pytest.raises(ProtocolUsageError):
        server.username  # noqa: B018
    client = make_client()
    with pytest.raises(ProtocolUsageError):
        client.receive_server_first(b"r=x,s=QQ==,i=1")


# -- authzid and SASLname -------------------------------------------------------------------------

@pytest.mark.parametrize(("authzid", "wire"), [
    ("admin@example.org", b"n,a=admin@example.org,"),
    ("a,b=c", b"n,a=a=2Cb=3Dc,"),
    ("=2C", b"n,a==3D2C,"),
])
def test_authzid_is_escaped_and_decoded(authzid: str, wire: bytes) -> None:
    client = make_client(authzid=authzid)
    first = client.client_first()
    assert first.startswith(wire)
    server = make_server()
    server.receive_client_first(first)
    assert server.authzid == authzid
    client_final = client.receive_server_first(server.server_first(creds("sha-256")))
    client.receive_server_final(server.receive_client_final(client_final))


def test_username_with_comma_and_equals_is_escaped_end_to_end() -> None:
    username = "we,ird=name"
    client = make_client(username=username)
    first = client.client_first()
    assert b"n=we=2Cird=3Dname," in first
    server = make_server()
    assert server.receive_client_first(first) == username
    client_final = client.receive_server_first(server.server_first(creds("sha-256")))
    client.receive_server_final(server.receive_client_final(client_final))


@pytest.mark.parametrize("message", [
    b"n,,n=us=2cer,r=abc",         # escapes are upper case
    b"n,,n=us=41er,r=abc",         # only =2C and =3D exist
    b"n,,n=user=,r=abc",
    b"n,a=bo=b,n=user,r=abc",
])
def test_bad_saslname_escapes_are_malformed(message: bytes) -> None:
    with pytest.raises(SaslFailure) as excinfo:
        make_server().receive_client_first(message)
    assert refusal(excinfo) is SaslCondition.MALFORMED_REQUEST


# -- malformed messages ---------------------------------------------------------------------------

@pytest.mark.parametrize("message", [
    b"", b"n", b"n,", b"n,,", b"x,,n=user,r=abc", b"n,,r=abc,n=user", b"n,,n=user",
    b"n,,n=,r=abc", b"n,,n=user,r=", b"n,,n=user,r=a b", b"n,b=x,n=user,r=abc",
    b"n,a=,n=user,r=abc", b"p=tls_unique,,n=user,r=abc", b"p=,,n=user,r=abc",
    b"n,,n=\xff,r=abc", b"n,,n=us\x00er,r=abc", b"n,,n=user,r=abc,", b"n,,n=user,r=abc,1=x",
    b"n,,n=user,r=" + b"a" * 2000, b"n,,n=" + b"u" * 4000 + b",r=abc", b"n,,n=user,r=abc,x=" + b"y" * 17000,
])
def test_malformed_client_first_is_refused(message: bytes) -> None:
    with pytest.raises(SaslFailure) as excinfo:
        make_server().receive_client_first(message)
    assert refusal(excinfo) is SaslCondition.MALFORMED_REQUEST


def test_unknown_extensions_are_ignored_but_mandatory_ones_refused() -> None:
    server = make_server()
    assert server.receive_client_first(b"n,,n=user,r=abc,x=whatever") == "user"
    with pytest.raises(SaslFailure) as excinfo:
        make_server().receive_client_first(b"n,,m=ext,n=user,r=abc")
    assert refusal(excinfo) is SaslCondition.NOT_AUTHORIZED


@pytest.mark.parametrize("message", [
    b"", b"c=biws", b"c=biws,r=abcSERVERnonce", b"r=abcSERVERnonce,c=biws,p=AAAA",
    b"c=biws,p=AAAA,r=abcSERVERnonce", b"c=b!ws,r=abcSERVERnonce,p=AAAA",
    b"c=biws,r=abcSERVERnonce,p=AAA", b"c=biws,r=abcSERVERnonce,p=\xc3",
])
def test_malformed_client_final_is_refused(message: bytes) -> None:
    server = make_server()
    server.receive_client_first(b"n,,n=user,r=abc")
    server.server_first(creds("sha-256"))
    with pytest.raises(SaslFailure) as excinfo:
        server.receive_client_final(message)
    assert refusal(excinfo) is SaslCondition.MALFORMED_REQUEST


# -- client-side checks ---------------------------------------------------------------------------

@pytest.mark.parametrize(("server_first", "condition"), [
    (b"r=OTHERnonce,s=QUJD,i=4096", SaslCondition.NOT_AUTHORIZED),       # does not extend ours
    (b"r=CLIENTnonce,s=QUJD,i=4096", SaslCondition.NOT_AUTHORIZED),      # adds nothing
    (b"r=CLIENTnonceX,s=QUJD,i=99999999999", SaslCondition.NOT_AUTHORIZED),
    (b"r=CLIENTnonceX,s=QUJD,i=10000001", SaslCondition.NOT_AUTHORIZED),
    (b"r=CLIENTnonceX,s=QUJD,i=" + b"9" * 5000, SaslCondition.NOT_AUTHORIZED),
    (b"r=CLIENTnonceX,s=QUJD,i=0", SaslCondition.MALFORMED_REQUEST),
    (b"r=CLIENTnonceX,s=QUJD,i=0100", SaslCondition.MALFORMED_REQUEST),
    (b"r=CLIENTnonceX,s=QUJD,i=many", SaslCondition.MALFORMED_REQUEST),
    (b"m=x,r=CLIENTnonceX,s=QUJD,i=4096", SaslCondition.NOT_AUTHORIZED),
    (b"r=CLIENTnonceX,s=,i=4096", SaslCondition.MALFORMED_REQUEST),
    (b"r=CLIENTnonceX,s=Q,i=4096", SaslCondition.MALFORMED_REQUEST),
    (b"r=CLIENTnonceX,i=4096", SaslCondition.MALFORMED_REQUEST),
    (b"s=QUJD,r=CLIENTnonceX,i=4096", SaslCondition.MALFORMED_REQUEST),
])
def test_client_refuses_bad_server_first(server_first: bytes, condition: SaslCondition) -> None:
    client = make_client()
    client.client_first()
    with pytest.raises(SaslFailure) as excinfo:
        client.receive_server_first(server_first)
    assert refusal(excinfo) is condition


@pytest.mark.parametrize("server_final", [b"e=invalid-proof", b"v=AAAA", b"v=" + b"A" * 44])
def test_client_refuses_server_error_or_wrong_signature(server_final: bytes) -> None:
    client = make_client()
    server = make_server()
    server.receive_client_first(client.client_first())
    client.receive_server_first(server.server_first(creds("sha-256")))
    with pytest.raises(SaslFailure) as excinfo:
        client.receive_server_final(server_final)
    assert refusal(excinfo) is SaslCondition.NOT_AUTHORIZED


def test_client_accepts_low_iteration_counts() -> None:
    # RFC 7677 §4 only recommends >= 4096; servers with less still work.
    low = derive_scram_credentials("pencil", "sha-256", salt=SALT, iterations=1)
    exchange(make_client(), make_server(), low)


@pytest.mark.parametrize("kwargs", [
    {"username": ""}, {"password": ""}, {"password": "bad\x07"}, {"client_nonce": "has,comma"},
    {"client_nonce": ""}, {"authzid": ""}, {"plus": True}, {"plus": True, "channel_binding": ("bad type", b"")},
])
def test_client_refuses_bad_arguments(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        make_client(**kwargs)


# -- credentials and password preparation ---------------------------------------------------------

def test_credentials_json_round_trip() -> None:
    original = creds("sha-1")
    data = original.to_json()
    assert data["salt"] == base64.b64encode(SALT).decode()
    assert ScramCredentials.from_json(data) == original


@pytest.mark.parametrize("change", [
    {"hash_name": "md5"}, {"hash_name": 1}, {"iterations": 0}, {"iterations": "4096"},
    {"iterations": True}, {"salt": ""}, {"salt": "not base64!"}, {"stored_key": "QUJD"},
    {"server_key": None}, {"salt": None},
])
def test_credentials_from_bad_json_raise_value_error(change: dict[str, object]) -> None:
    data: dict[str, object] = {**creds("sha-256").to_json(), **change}
    with pytest.raises(ValueError):
        ScramCredentials.from_json(data)


def test_credentials_from_json_with_missing_field_raise_value_error() -> None:
    data = creds("sha-256").to_json()
    del data["server_key"]
    with pytest.raises(ValueError):
        ScramCredentials.from_json(data)


def test_prepare_password_applies_opaque_string() -> None:
    assert prepare_password("pencil") == "pencil"
    assert prepare_password("a\u00a0b") == "a b"          # non-ASCII space -> U+0020
    assert prepare_password("e\u0301") == "\u00e9"         # NFC
    for refused in ("", "bad\x00", "zero\u200bwidth"):
        with pytest.raises(ValueError):
            prepare_password(refused)


def test_equivalent_passwords_authenticate_alike() -> None:
    stored = derive_scram_credentials("caf\u00e9", "sha-256", salt=SALT, iterations=4096)
    exchange(make_client(password="cafe\u0301"), make_server(), stored)


# -- fuzzing: a peer's garbage only ever yields SaslFailure ---------------------------------------

_FRAGMENTS = st.sampled_from([
    "n", "y", "p=tls-exporter", "p=", "a=bob", "a=", "n=user", "n=", "r=abc", "r=abcSERVERnonce",
    "r=CLIENTnonceXY", "r=", "m=ext", "s=QUJD", "s=", "i=4096", "i=1", "i=0", "i=", "c=biws",
    "c=", "p=AAAA", "v=AAAA", "e=other-error", "=", "=2C", "==", "", "x=y",
])
_GARBAGE = st.one_of(
    st.binary(max_size=300),
    st.lists(st.one_of(_FRAGMENTS, st.text(max_size=12)), max_size=8).map(
        lambda parts: ",".join(parts).encode("utf-8", "surrogatepass")),
)
_FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@_FUZZ
@given(_GARBAGE)
def test_receive_client_first_only_raises_sasl_failure(message: bytes) -> None:
    try:
        make_server(plus_advertised=True).receive_client_first(message)
    except SaslFailure:
        pass


@_FUZZ
@given(_GARBAGE)
def test_receive_client_final_only_raises_sasl_failure(message: bytes) -> None:
    server = make_server()
    server.receive_client_first(b"n,,n=user,r=abc")
    server.server_first(creds("sha-256"))
    try:
        server.receive_client_final(message)
    except SaslFailure:
        pass


@_FUZZ
@given(_GARBAGE)
def test_receive_server_first_only_raises_sasl_failure(message: bytes) -> None:
    client = make_client()
    client.client_first()
    try:
        client.receive_server_first(message)
    except SaslFailure:
        pass


@_FUZZ
@given(_GARBAGE)
def test_receive_server_final_only_raises_sasl_failure(message: bytes) -> None:
    client = make_client()
    client.client_first()
    client.receive_server_first(b"r=CLIENTnonceSERVER,s=QUJD,i=1")
    try:
        client.receive_server_final(message)
    except SaslFailure:
        pass
