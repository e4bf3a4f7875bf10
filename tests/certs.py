"""Test certificates: a test CA, the server certificates it issues (or self-signed
ones), and their files.

Keys are P-256. Every certificate is made anew on each call; nothing is cached.
"""

from __future__ import annotations

import base64
import datetime
import ipaddress
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

DAY = datetime.timedelta(days=1)
# A test CA (or any key and certificate pair).
CA = tuple[ec.EllipticCurvePrivateKey, x509.Certificate]


def new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def make_ca(common_name: str = "Telecircle test CA") -> CA:
    """A CA valid from a day ago for 30 days, that may sign server certificates."""
    key = new_key()
    now = _now()
    certificate = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name))
        .issuer_name(_name(common_name))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - DAY)
        .not_valid_after(now + 30 * DAY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
        .sign(key, hashes.SHA256())
    )
    return key, certificate


def issue(
    ca: CA | None,
    names: tuple[str, ...] = ("127.0.0.1", "localhost"),
    *,
    not_before: datetime.datetime | None = None,
    not_after: datetime.datetime | None = None,
) -> CA:
    """A server certificate for ``names`` (IP addresses or DNS names; the first is also
    its common name) signed by ``ca``, or self-signed without one, and its key. Valid
    from ``not_before`` (default: a day ago) to ``not_after`` (default: in 10 days)."""
    now = _now()
    key = new_key()
    alternative: list[x509.GeneralName] = []
    for name in names:
        try:
            alternative.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            alternative.append(x509.DNSName(name))
    issuer, signer = (ca[1].subject, ca[0]) if ca else (_name(names[0]), key)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(_name(names[0]))
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - DAY if not_before is None else not_before)
        .not_valid_after(now + 10 * DAY if not_after is None else not_after)
        .add_extension(x509.SubjectAlternativeName(alternative), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), False)
        .sign(signer, hashes.SHA256())
    )
    return key, certificate


def write_certificate(path: Path, *chain: x509.Certificate) -> Path:
    """``chain`` (leaf first) as PEM in ``path``; returns ``path``."""
    path.write_bytes(b"".join(c.public_bytes(serialization.Encoding.PEM) for c in chain))
    return path


def write_key(
    path: Path, key: ec.EllipticCurvePrivateKey, mode: int = 0o600, passphrase: bytes = b""
) -> Path:
    """``key`` as PKCS#8 PEM in ``path`` (encrypted with ``passphrase`` if given), with
    file mode ``mode``; returns ``path``."""
    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(passphrase)
        if passphrase
        else serialization.NoEncryption()
    )
    path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption)
    )
    path.chmod(mode)
    return path


def spki_sha256_base64(certificate: x509.Certificate) -> str:
    """The certificate's public key hash, as Chromium's --ignore-certificate-errors-spki-list
    takes it."""
    spki = certificate.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    digest = hashes.Hash(hashes.SHA256())
    digest.update(spki)
    return base64.b64encode(digest.finalize()).decode()
