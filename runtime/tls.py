"""Cluster identities: the CA the hub holds, and the certificates it issues.

Every process in a cluster holds a certificate signed by one cluster CA
(ECDSA P-256). Its identity is one URI in the subjectAltName,
``canistry://<role>/<name>``, which a server reads off the verified peer
certificate to decide who may call what (``runtime.authz``). Every
certificate also names two DNS hosts, ``canistry.internal`` and
``<role>.canistry.internal``: clients verify a server against the second
(``ssl_target_name_override``), so a shard dialling "the hub" accepts only a
hub, whatever address it dialled.

On disk a holder has one directory with ``ca.pem`` (the cluster CA,
public), ``cert.pem`` and ``key.pem`` (mode 0600): :meth:`TLSConfig.from_dir`
reads it. The CA's own directory holds ``ca.pem`` and ``ca.key`` (0600);
only the process that issues certificates (``canistry up``, then the hub for
its shards) ever opens it.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import secrets
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Self

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from runtime.errors import InvalidArgument

__all__ = [
    "CA_CERT_FILE",
    "CA_KEY_FILE",
    "CERT_FILE",
    "CLUSTER_HOST",
    "KEY_FILE",
    "BadCertificateRequest",
    "ClusterCA",
    "Identity",
    "Role",
    "TLSConfig",
    "TLSError",
    "TLSMaterial",
    "certificate_fits",
    "holds_good_certificate",
    "identity_of",
    "new_key_and_csr",
    "server_host",
    "write_identity",
]

CA_CERT_FILE = "ca.pem"
CA_KEY_FILE = "ca.key"
CERT_FILE = "cert.pem"
KEY_FILE = "key.pem"

#: DNS name every cluster certificate carries; ``<role>.`` + it names the role.
CLUSTER_HOST = "canistry.internal"
URI_SCHEME = "canistry"

CA_VALID = dt.timedelta(days=3650)
CERT_VALID = dt.timedelta(days=365)
#: A certificate closer than this to its end is issued again on the next start.
RENEW_WITHIN = dt.timedelta(days=30)
#: Tolerated clock difference between the issuer and the peers.
CLOCK_SKEW = dt.timedelta(minutes=5)

_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,62}$")


class TLSError(ValueError):
    """Certificates or keys are missing, unreadable or not what they claim."""


class BadCertificateRequest(InvalidArgument):
    """A certificate signing request the CA will not sign (see :meth:`ClusterCA.sign_csr`)."""

    code = "bad-certificate-request"


#: The least RSA key size :meth:`ClusterCA.sign_csr` signs.
MIN_RSA_BITS = 2048


class Role(StrEnum):
    """What a certificate holder is in the cluster; servers authorize by it."""

    HUB = "hub"
    REGISTRY = "registry"
    CONTENT = "content"
    SHARD = "shard"
    GATEWAY = "gateway"
    OPERATOR = "operator"
    """The command line (``canistry status``, ``content import``)."""


@dataclass(frozen=True)
class Identity:
    """Who holds a certificate: a role and a name (a shard id, or the role again)."""

    role: Role
    name: str

    def __post_init__(self) -> None:
        object.__setattr__(self, "role", Role(self.role))
        if not _NAME.match(self.name):
            raise ValueError(f"identity name must match {_NAME.pattern}, got {self.name!r}")

    @property
    def uri(self) -> str:
        return f"{URI_SCHEME}://{self.role}/{self.name}"

    @classmethod
    def from_uri(cls, uri: str) -> Identity | None:
        """Parse ``canistry://<role>/<name>``; None for anything else."""
        prefix = f"{URI_SCHEME}://"
        if not uri.startswith(prefix):
            return None
        role, sep, name = uri[len(prefix) :].partition("/")
        try:
            return cls(Role(role), name) if sep else None
        except ValueError:
            return None

    def __str__(self) -> str:
        return f"{self.role}/{self.name}"


def server_host(role: Role | str | None) -> str:
    """The DNS name a client checks a server's certificate against."""
    return CLUSTER_HOST if role is None else f"{Role(role)}.{CLUSTER_HOST}"


def identity_of(cert: x509.Certificate) -> Identity | None:
    """The one ``canistry://`` identity in ``cert``'s subjectAltName, or None.

    A certificate naming none, or more than one, has no identity.
    """
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return None
    found = [Identity.from_uri(u) for u in san.get_values_for_type(x509.UniformResourceIdentifier)]
    found = [i for i in found if i is not None]
    return found[0] if len(found) == 1 else None


@dataclass(frozen=True)
class TLSMaterial:
    """The PEM bytes gRPC wants: the CA to trust, our chain and our key."""

    ca_cert: bytes
    cert: bytes
    key: bytes


@dataclass(frozen=True)
class TLSConfig:
    """Where one process's cluster certificate lives."""

    ca_cert: Path
    """The cluster CA certificate: peers are trusted if and only if it signed them."""
    cert: Path
    """This process's certificate (PEM), signed by the cluster CA."""
    key: Path
    """Its private key (PEM, unencrypted, mode 0600)."""

    def __post_init__(self) -> None:
        for name in ("ca_cert", "cert", "key"):
            object.__setattr__(self, name, Path(getattr(self, name)))

    @classmethod
    def from_dir(cls, directory: Path) -> Self:
        """The ``ca.pem``, ``cert.pem`` and ``key.pem`` in ``directory``.

        Raises :class:`TLSError` naming what is missing.
        """
        directory = Path(directory)
        cfg = cls(directory / CA_CERT_FILE, directory / CERT_FILE, directory / KEY_FILE)
        missing = [p.name for p in (cfg.ca_cert, cfg.cert, cfg.key) if not p.is_file()]
        if missing:
            raise TLSError(f"{directory}: missing {', '.join(missing)}")
        return cfg

    def read(self) -> TLSMaterial:
        """The files' bytes. Raises :class:`TLSError` if one cannot be read."""
        try:
            return TLSMaterial(
                self.ca_cert.read_bytes(), self.cert.read_bytes(), self.key.read_bytes()
            )
        except OSError as exc:
            raise TLSError(f"cannot read TLS files: {exc}") from None

    def identity(self) -> Identity:
        """The identity this certificate carries. Raises :class:`TLSError` if none."""
        found = identity_of(_load_cert(self.cert))
        if found is None:
            raise TLSError(f"{self.cert} carries no canistry:// identity")
        return found


class ClusterCA:
    """The cluster's certificate authority: one key, one self-signed certificate.

    ``ClusterCA.open(dir)`` loads the CA kept in ``dir`` or makes one there;
    :meth:`issue` and :meth:`ensure` write a holder's directory.
    """

    def __init__(self, cert: x509.Certificate, key: ec.EllipticCurvePrivateKey) -> None:
        self.cert = cert
        self._key = key
        self.cert_pem = cert.public_bytes(serialization.Encoding.PEM)

    @classmethod
    def open(cls, ca_dir: Path) -> ClusterCA:
        """Load the CA in ``ca_dir``, or create it there if there is none yet."""
        ca_dir = Path(ca_dir)
        if (ca_dir / CA_KEY_FILE).exists() or (ca_dir / CA_CERT_FILE).exists():
            return cls.load(ca_dir)
        return cls.create(ca_dir)

    @classmethod
    def load(cls, ca_dir: Path) -> ClusterCA:
        """The CA kept in ``ca_dir``. Raises :class:`TLSError` if it is missing or broken."""
        ca_dir = Path(ca_dir)
        try:
            cert = x509.load_pem_x509_certificate((ca_dir / CA_CERT_FILE).read_bytes())
            key = serialization.load_pem_private_key((ca_dir / CA_KEY_FILE).read_bytes(), None)
        except (OSError, ValueError) as exc:
            raise TLSError(f"no usable cluster CA in {ca_dir}: {exc}") from None
        if not isinstance(key, ec.EllipticCurvePrivateKey) or not _pairs(key, cert):
            raise TLSError(f"{ca_dir}: {CA_KEY_FILE} does not belong to {CA_CERT_FILE}")
        return cls(cert, key)

    @classmethod
    def create(cls, ca_dir: Path, *, valid: dt.timedelta = CA_VALID) -> ClusterCA:
        """Make a new CA in ``ca_dir`` (which must not hold one)."""
        ca_dir = Path(ca_dir)
        key = ec.generate_private_key(ec.SECP256R1())
        # A random tag keeps two clusters' CAs apart in logs and tools.
        name = x509.Name(
            [
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Canistry"),
                x509.NameAttribute(
                    NameOID.COMMON_NAME, f"Canistry cluster CA {secrets.token_hex(4)}"
                ),
            ]
        )
        now = _now()
        ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - CLOCK_SKEW)
            .not_valid_after(now + valid)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(_key_usage(cert_sign=True), critical=True)
            .add_extension(ski, critical=False)
            .sign(key, hashes.SHA256())
        )
        _write(ca_dir / CA_KEY_FILE, _key_pem(key), private=True, exclusive=True)
        _write(ca_dir / CA_CERT_FILE, cert.public_bytes(serialization.Encoding.PEM))
        return cls(cert, key)

    def issue(
        self, identity: Identity, out_dir: Path, *, valid: dt.timedelta = CERT_VALID
    ) -> TLSConfig:
        """Write a new key and certificate for ``identity`` into ``out_dir``, with ``ca.pem``."""
        key = ec.generate_private_key(ec.SECP256R1())
        cert = self._certify(key.public_key(), identity, valid)
        return write_identity(
            out_dir,
            key_pem=_key_pem(key),
            cert_pem=cert.public_bytes(serialization.Encoding.PEM),
            ca_pem=self.cert_pem,
        )

    def sign_csr(
        self, csr_pem: bytes, identity: Identity, *, valid: dt.timedelta = CERT_VALID
    ) -> bytes:
        """A certificate (PEM) for ``identity`` on the key of ``csr_pem``, as :meth:`issue` makes.

        The CA names the certificate itself: the request's subject and
        extensions are not copied. It refuses (:class:`BadCertificateRequest`)
        a request that does not parse, whose signature does not prove the key,
        whose key is neither EC (P-256, P-384, P-521) nor RSA of at least
        2048 bits, or that names anything but ``identity`` (another
        ``canistry://`` identity or role host, in its subject or
        subjectAltName).
        """
        try:
            csr = x509.load_pem_x509_csr(csr_pem)
        except ValueError:
            raise BadCertificateRequest("not a PEM certificate signing request") from None
        try:
            proven = csr.is_signature_valid
            key = csr.public_key()
        except (ValueError, UnsupportedAlgorithm):
            raise BadCertificateRequest("the request's key or signature is not supported") from None
        if not proven:
            raise BadCertificateRequest("the request's signature does not match its key")
        if isinstance(key, ec.EllipticCurvePublicKey):
            if not isinstance(key.curve, ec.SECP256R1 | ec.SECP384R1 | ec.SECP521R1):
                raise BadCertificateRequest(f"EC curve {key.curve.name} is not accepted")
        elif isinstance(key, rsa.RSAPublicKey):
            if key.key_size < MIN_RSA_BITS:
                raise BadCertificateRequest(f"RSA keys must be >= {MIN_RSA_BITS} bits")
        else:
            raise BadCertificateRequest("the key must be EC or RSA")
        _check_names(csr, identity)
        cert = self._certify(key, identity, valid)
        return cert.public_bytes(serialization.Encoding.PEM)

    def _certify(
        self,
        public_key: ec.EllipticCurvePublicKey | rsa.RSAPublicKey,
        identity: Identity,
        valid: dt.timedelta,
    ) -> x509.Certificate:
        """The certificate naming ``identity`` on ``public_key``, signed by this CA."""
        now = _now()
        not_after = min(now + valid, self.cert.not_valid_after_utc)
        return (
            x509.CertificateBuilder()
            .subject_name(
                x509.Name(
                    [
                        x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Canistry"),
                        x509.NameAttribute(NameOID.COMMON_NAME, str(identity)),
                    ]
                )
            )
            .issuer_name(self.cert.subject)
            .public_key(public_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - CLOCK_SKEW)
            .not_valid_after(not_after)
            .add_extension(x509.SubjectAlternativeName(_names(identity)), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(_key_usage(cert_sign=False), critical=True)
            .add_extension(
                x509.ExtendedKeyUsage(
                    [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
                ),
                critical=False,
            )
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self._key.public_key()),
                critical=False,
            )
            .sign(self._key, hashes.SHA256())
        )

    def ensure(
        self, identity: Identity, out_dir: Path, *, renew_within: dt.timedelta = RENEW_WITHIN
    ) -> TLSConfig:
        """Keep the certificate in ``out_dir`` if it is still good, else :meth:`issue` one.

        Good means: signed by this CA, for ``identity``, with its key beside
        it, and more than ``renew_within`` from its end.
        """
        if self._still_good(identity, Path(out_dir), renew_within):
            return TLSConfig.from_dir(out_dir)
        return self.issue(identity, out_dir)

    def _still_good(self, identity: Identity, out_dir: Path, renew_within: dt.timedelta) -> bool:
        return holds_good_certificate(
            out_dir, identity, ca_pem=self.cert_pem, renew_within=renew_within
        )

    def signed(self, cert: x509.Certificate) -> bool:
        """Whether this CA issued ``cert``."""
        try:
            cert.verify_directly_issued_by(self.cert)
        except (ValueError, TypeError, InvalidSignature):
            return False
        return True


def holds_good_certificate(
    directory: Path,
    identity: Identity,
    *,
    ca_pem: bytes,
    renew_within: dt.timedelta = RENEW_WITHIN,
) -> bool:
    """Whether ``directory`` holds a certificate worth keeping for ``identity``.

    Worth keeping: its ``ca.pem`` is ``ca_pem``, and :func:`certificate_fits`
    holds for its ``cert.pem`` and ``key.pem``. Needs only the CA's public
    certificate, so a holder can ask it of itself.
    """
    try:
        cfg = TLSConfig.from_dir(directory)
        if cfg.ca_cert.read_bytes() != ca_pem:
            return False
        cert_pem, key_pem = cfg.cert.read_bytes(), cfg.key.read_bytes()
    except (OSError, ValueError):
        return False
    return certificate_fits(
        cert_pem, key_pem, ca_pem=ca_pem, identity=identity, renew_within=renew_within
    )


def certificate_fits(
    cert_pem: bytes,
    key_pem: bytes,
    *,
    ca_pem: bytes,
    identity: Identity,
    renew_within: dt.timedelta = dt.timedelta(0),
) -> bool:
    """Whether ``cert_pem`` was signed by ``ca_pem``, names ``identity``, belongs to
    ``key_pem`` (EC or RSA), and is more than ``renew_within`` from its end."""
    try:
        ca = x509.load_pem_x509_certificate(ca_pem)
        cert = x509.load_pem_x509_certificate(cert_pem)
        key = serialization.load_pem_private_key(key_pem, None)
        cert.verify_directly_issued_by(ca)
    except (ValueError, TypeError, InvalidSignature, UnsupportedAlgorithm):
        return False
    if identity_of(cert) != identity:
        return False
    if not isinstance(key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey) or not _pairs(key, cert):
        return False
    return cert.not_valid_after_utc - _now() > renew_within


def new_key_and_csr(identity: Identity) -> tuple[bytes, bytes]:
    """A new P-256 key (PEM, PKCS#8) and a request (PEM) for ``identity`` signed by it."""
    key = ec.generate_private_key(ec.SECP256R1())
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, str(identity))]))
        .add_extension(x509.SubjectAlternativeName(_names(identity)), critical=False)
        .sign(key, hashes.SHA256())
    )
    return _key_pem(key), csr.public_bytes(serialization.Encoding.PEM)


def write_identity(out_dir: Path, *, key_pem: bytes, cert_pem: bytes, ca_pem: bytes) -> TLSConfig:
    """Write a holder's directory: ``key.pem`` (0600), ``cert.pem``, ``ca.pem``, each whole."""
    out_dir = Path(out_dir)
    # Key first: a reader that finds the new certificate finds its key too.
    _write(out_dir / KEY_FILE, key_pem, private=True)
    _write(out_dir / CERT_FILE, cert_pem)
    _write(out_dir / CA_CERT_FILE, ca_pem)
    return TLSConfig.from_dir(out_dir)


def _names(identity: Identity) -> list[x509.GeneralName]:
    """The subjectAltName of ``identity``'s certificate: its URI and its two hosts."""
    return [
        x509.UniformResourceIdentifier(identity.uri),
        x509.DNSName(CLUSTER_HOST),
        x509.DNSName(server_host(identity.role)),
    ]


def _check_names(csr: x509.CertificateSigningRequest, identity: Identity) -> None:
    """Refuse a request naming anything but ``identity``. Raises BadCertificateRequest."""
    for attr in csr.subject.get_attributes_for_oid(NameOID.COMMON_NAME):
        if attr.value not in (str(identity), identity.uri):
            raise BadCertificateRequest(f"the request names {attr.value!r}, not {identity}")
    try:
        san = csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return
    allowed = set(_names(identity))
    for name in san:
        if name not in allowed:
            raise BadCertificateRequest(f"the request asks for {name.value!r}, not {identity}")


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(microsecond=0)


def _pairs(key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey, cert: x509.Certificate) -> bool:
    """Whether ``key`` is the private half of ``cert``'s public key."""
    spki = (serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return key.public_key().public_bytes(*spki) == cert.public_key().public_bytes(*spki)


def _load_cert(path: Path) -> x509.Certificate:
    try:
        return x509.load_pem_x509_certificate(path.read_bytes())
    except (OSError, ValueError) as exc:
        raise TLSError(f"cannot read certificate {path}: {exc}") from None


def _key_usage(*, cert_sign: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=not cert_sign,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=cert_sign,
        crl_sign=cert_sign,
        encipher_only=False,
        decipher_only=False,
    )


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _write(path: Path, data: bytes, *, private: bool = False, exclusive: bool = False) -> None:
    """Write ``data`` whole (temp file, fsync, rename); private files are 0600 from birth."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    if exclusive and path.exists():
        raise TLSError(f"{path} exists; refusing to overwrite it")
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600 if private else 0o644)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
