"""Who is calling: the API key file (create, list, revoke; only hashes at rest; concurrent
writers) and people's JWTs from a local issuer the tests create (a JWKS file, and a JWKS
served over local HTTP), each refused for every way a token can be wrong."""

import base64
import hashlib
import hmac
import http.server
import json
import multiprocessing
import os
import stat
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from pydantic import ValidationError

from ragops_shared.identity import (
    ApiKeyStore,
    Authenticator,
    JwtVerifier,
    Principal,
    Role,
    Unauthenticated,
    authenticator_for,
)
from ragops_shared.settings import AuthSettings

ISSUER, AUDIENCE, KID = "https://issuer.test", "ragops", "key-1"


def _secret(credential: str) -> str:
    """The secret part of ``rgk_<16 hex key id>_<secret>`` (the secret may hold ``_`` too)."""
    return credential[len("rgk_") + 17 :]


@pytest.fixture
def store(tmp_path: Path) -> ApiKeyStore:
    return ApiKeyStore(tmp_path / "auth" / "api-keys.json")


def test_a_created_key_authenticates_as_its_principal(store: ApiKeyStore) -> None:
    key, credential = store.create("ingest-bot", "acme", [Role.PRODUCER, Role.PRODUCT, Role.PRODUCER])
    assert key.roles == (Role.PRODUCER, Role.PRODUCT)
    assert store.authenticate(credential) == Principal(
        f"key:{key.key_id}",
        "acme",
        frozenset({Role.PRODUCER, Role.PRODUCT}),
        "api_key",
        "ingest-bot",
        f"key:{key.key_id}",
    )
    assert store.keys() == [store.find(key.key_id)]


def test_a_key_answers_to_its_owner_else_to_itself(store: ApiKeyStore) -> None:
    own, own_credential = store.create("bot", "acme", [Role.PRODUCER])
    owned, owned_credential = store.create("alice-bot", "acme", [Role.APPROVER], owner="person:alice")
    assert store.authenticate(own_credential).owner == f"key:{own.key_id}" == own.owner
    assert store.authenticate(owned_credential).owner == "person:alice" == owned.owner
    with pytest.raises(ValidationError):
        store.create("bot", "acme", [Role.PRODUCER], owner="alice")


def test_a_key_file_written_before_owners_reads_each_key_as_its_own_owner(store: ApiKeyStore) -> None:
    key, credential = store.create("bot", "acme", [Role.PRODUCER])
    document = json.loads(store.path.read_text())
    del document["keys"][0]["owner"]
    store.path.write_text(json.dumps(document))
    assert ApiKeyStore(store.path).authenticate(credential).owner == f"key:{key.key_id}"


def test_only_the_hash_is_at_rest_in_a_file_only_its_owner_reads(store: ApiKeyStore) -> None:
    _, credential = store.create("bot", "acme", [Role.PRODUCER])
    secret = _secret(credential)
    text = store.path.read_text()
    assert secret not in text and hashlib.sha256(secret.encode()).hexdigest() in text
    assert stat.S_IMODE(store.path.stat().st_mode) == 0o600
    assert stat.S_IMODE(store.path.parent.stat().st_mode) == 0o700


def test_revoked_unknown_malformed_and_wrong_secret_keys_are_refused_alike(store: ApiKeyStore) -> None:
    key, credential = store.create("bot", "acme", [Role.PRODUCER])
    _, kept = store.create("other", "acme", [Role.PRODUCER])
    wrong_secret = credential[: -len("x")] + ("A" if credential[-1] != "A" else "B")
    unknown = f"rgk_{'0' * 16}_{_secret(credential)}"
    assert store.revoke(key.key_id).revoked_at is not None
    assert store.revoke(key.key_id).revoked_at == store.find(key.key_id).revoked_at  # idempotent
    messages = set()
    for presented in (credential, wrong_secret, unknown, "rgk_short", credential + "x", ""):
        with pytest.raises(Unauthenticated) as refused:
            store.authenticate(presented)
        messages.add(str(refused.value))
    assert messages == {"invalid API key"}
    assert store.authenticate(kept).subject.startswith("key:")
    with pytest.raises(KeyError):
        store.revoke("0" * 16)


def test_a_key_created_or_revoked_elsewhere_takes_effect_without_a_restart(store: ApiKeyStore) -> None:
    other = ApiKeyStore(store.path)
    assert store.keys() == []
    key, credential = other.create("bot", "acme", [Role.PRODUCER])
    assert store.authenticate(credential).tenant == "acme"
    other.revoke(key.key_id)
    with pytest.raises(Unauthenticated):
        store.authenticate(credential)


def test_a_same_size_change_within_the_clocks_resolution_is_seen(store: ApiKeyStore) -> None:
    """A replaced file (a re-mounted Secret) with the same size and modification time."""
    _, credential = store.create("bot", "acme", [Role.PRODUCER])
    assert store.authenticate(credential).tenant == "acme"
    before = store.path.stat()
    edited = store.path.with_name("edited.json")
    edited.write_text(store.path.read_text().replace('"acme"', '"acmf"'))
    os.utime(edited, ns=(before.st_atime_ns, before.st_mtime_ns))
    os.replace(edited, store.path)
    assert store.authenticate(credential).tenant == "acmf"


def test_a_link_planted_at_the_temporary_or_lock_file_is_not_followed(store: ApiKeyStore, tmp_path: Path) -> None:
    """Whoever could put a link where the writer puts its temporary file (the path is known)
    would have it write, with the writer's rights, wherever the link points."""
    store.create("first", "acme", [Role.PRODUCER])
    victim = tmp_path / "victim"
    victim.write_text("untouched")
    temporary = store.path.with_name(store.path.name + ".tmp")
    temporary.symlink_to(victim)
    key, credential = store.create("second", "acme", [Role.PRODUCER])
    assert victim.read_text() == "untouched"
    assert not temporary.is_symlink() and not temporary.exists()
    assert ApiKeyStore(store.path).authenticate(credential).subject == f"key:{key.key_id}"

    lock = store.path.with_name(store.path.name + ".lock")
    lock.unlink()
    lock.symlink_to(victim)
    with pytest.raises(OSError):
        store.create("third", "acme", [Role.PRODUCER])
    assert victim.read_text() == "untouched" and len(ApiKeyStore(store.path).keys()) == 2


def test_keys_are_not_written_in_a_folder_others_may_write(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    with pytest.raises(PermissionError, match="writable by its group or others"):
        ApiKeyStore(shared / "api-keys.json").create("bot", "acme", [Role.PRODUCER])
    assert list(shared.iterdir()) == []


def _create_many(path: Path, writer: int, count: int) -> list[str]:
    store = ApiKeyStore(path)
    return [store.create(f"writer-{writer}-{n}", "acme", [Role.PRODUCER])[0].key_id for n in range(count)]


def test_two_concurrent_writers_lose_no_key(tmp_path: Path) -> None:
    path = tmp_path / "auth" / "api-keys.json"
    with multiprocessing.get_context("fork").Pool(2) as pool:
        created = pool.starmap(_create_many, [(path, 0, 25), (path, 1, 25)])
    stored = ApiKeyStore(path).keys()
    assert sorted(key.key_id for key in stored) == sorted(created[0] + created[1])


def test_the_authenticator_wants_a_bearer_credential(store: ApiKeyStore) -> None:
    _, credential = store.create("bot", "acme", [Role.PRODUCER])
    authenticator = Authenticator(store)
    assert authenticator.authenticate(f"Bearer {credential}").tenant == "acme"
    assert authenticator.authenticate(f"bearer  {credential} ").tenant == "acme"
    for header in (None, "", "Bearer", "Bearer ", f"Basic {credential}", credential, "Bearer eyJ.not.a-jwt"):
        with pytest.raises(Unauthenticated):
            authenticator.authenticate(header)


# --- people's JWTs, from a local issuer ---


class Issuer:
    """An OIDC issuer for tests: an RSA key, its JWKS, and tokens it signs."""

    def __init__(self) -> None:
        self.private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.public_pem = self.private.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(self.private.public_key()))
        self.jwks = {"keys": [{**jwk, "kid": KID, "use": "sig", "alg": "RS256"}]}

    def claims(self, **changes: object) -> dict[str, object]:
        now = int(time.time())
        claims: dict[str, object] = {
            "iss": ISSUER,
            "aud": AUDIENCE,
            "sub": "alice",
            "iat": now,
            "exp": now + 300,
            "ragops_tenant": "acme",
            "ragops_roles": ["analyst", "approver"],
        }
        claims.update(changes)
        return {name: value for name, value in claims.items() if value is not None}

    def token(self, kid: str = KID, **changes: object) -> str:
        return jwt.encode(self.claims(**changes), self.private, algorithm="RS256", headers={"kid": kid})


def _unsigned(claims: dict[str, object]) -> str:
    def part(value: dict[str, object]) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()

    return f"{part({'alg': 'none', 'typ': 'JWT', 'kid': KID})}.{part(claims)}."


def _hs256_with_public_key(issuer: Issuer) -> str:
    """Algorithm confusion: an HMAC signature keyed with the issuer's public key (PyJWT refuses
    to encode that itself, so the token is assembled by hand)."""

    def part(value: bytes) -> str:
        return base64.urlsafe_b64encode(value).rstrip(b"=").decode()

    signing_input = ".".join(
        part(json.dumps(value).encode()) for value in ({"alg": "HS256", "typ": "JWT", "kid": KID}, issuer.claims())
    )
    signature = hmac.new(issuer.public_pem, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{part(signature)}"


@pytest.fixture(scope="module")
def issuer() -> Issuer:
    return Issuer()


@pytest.fixture(scope="module")
def jwks_url(issuer: Issuer) -> Iterator[str]:
    """The issuer's JWKS served over HTTP on a local port."""
    body = json.dumps(issuer.jwks).encode()

    class Jwks(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Jwks)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/.well-known/jwks.json"
    server.shutdown()
    server.server_close()


@pytest.fixture(params=["file", "url"])
def verifier(request: pytest.FixtureRequest, issuer: Issuer, tmp_path: Path) -> JwtVerifier:
    if request.param == "file":
        jwks = tmp_path / "jwks.json"
        jwks.write_text(json.dumps(issuer.jwks))
        return JwtVerifier(AuthSettings(oidc_issuer=ISSUER, oidc_jwks_file=jwks))
    return JwtVerifier(AuthSettings(oidc_issuer=ISSUER, oidc_jwks_url=request.getfixturevalue("jwks_url")))


def test_a_valid_token_is_a_person_of_its_tenant_with_its_roles(verifier: JwtVerifier, issuer: Issuer) -> None:
    assert verifier.authenticate(issuer.token()) == Principal(
        "person:alice", "acme", frozenset({Role.ANALYST, Role.APPROVER}), "person", "alice", "person:alice"
    )


BAD_TOKENS = {
    "expired": lambda issuer: issuer.token(iat=int(time.time()) - 7200, exp=int(time.time()) - 3600),
    "wrong audience": lambda issuer: issuer.token(aud="someone-else"),
    "wrong issuer": lambda issuer: issuer.token(iss="https://evil.test"),
    "no expiry": lambda issuer: issuer.token(exp=None),
    "no subject": lambda issuer: issuer.token(sub=None),
    "alg none": lambda issuer: _unsigned(issuer.claims()),
    "HS256 keyed with the public key": _hs256_with_public_key,
    "unknown kid": lambda issuer: issuer.token(kid="key-2"),
    "signed by another key": lambda issuer: Issuer().token(),
    "no tenant": lambda issuer: issuer.token(ragops_tenant=None),
    "tenant not a name": lambda issuer: issuer.token(ragops_tenant="Acme Corp"),
    "tenant with a newline": lambda issuer: issuer.token(ragops_tenant="acme\n"),
    "tenant not text": lambda issuer: issuer.token(ragops_tenant=["acme"]),
    "no roles": lambda issuer: issuer.token(ragops_roles=None),
    "empty roles": lambda issuer: issuer.token(ragops_roles=[]),
    "unknown role": lambda issuer: issuer.token(ragops_roles=["analyst", "root"]),
    "roles not a list": lambda issuer: issuer.token(ragops_roles="admin"),
    "a role not text": lambda issuer: issuer.token(ragops_roles=[{"admin": True}]),
    "platform role (a platform key's, never a person's)": lambda issuer: issuer.token(
        ragops_roles=["analyst", "platform"]
    ),
    "garbage": lambda issuer: "not-a-token",
}


@pytest.mark.parametrize("case", BAD_TOKENS)
def test_a_bad_token_is_unauthenticated(verifier: JwtVerifier, issuer: Issuer, case: str) -> None:
    with pytest.raises(Unauthenticated):
        verifier.authenticate(BAD_TOKENS[case](issuer))


def test_jwts_are_accepted_only_when_an_issuer_is_configured(issuer: Issuer, tmp_path: Path) -> None:
    jwks = tmp_path / "jwks.json"
    jwks.write_text(json.dumps(issuer.jwks))
    with pytest.raises(Unauthenticated):
        authenticator_for(AuthSettings(), tmp_path).authenticate(f"Bearer {issuer.token()}")
    people = authenticator_for(AuthSettings(oidc_issuer=ISSUER, oidc_jwks_file=jwks), tmp_path)
    assert people.authenticate(f"Bearer {issuer.token()}").subject == "person:alice"
    with pytest.raises(ValueError, match="JWKS"):
        JwtVerifier(AuthSettings(oidc_issuer=ISSUER))
