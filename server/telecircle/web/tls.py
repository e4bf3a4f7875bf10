"""HTTPS served by Telecircle itself (small installs): the server's TLS context.

Three cases, from the settings:

- neither ``TLS_CERT_FILE`` nor ``TLS_SELF_SIGNED``: plain HTTP (a reverse proxy ends
  TLS, or a trial on one machine); :func:`server_ssl_context` returns None.
- ``TLS_CERT_FILE`` and ``TLS_KEY_FILE``: the files are checked before use, and a
  missing or unreadable file, a certificate that is expired or not yet valid, a key
  that group or others may read, a key protected by a passphrase or a key that is not
  the certificate's own is refused with a :class:`TlsConfigError` that names the
  setting and says how to fix it.
- ``TLS_SELF_SIGNED``: an ECDSA P-256 certificate made on first run in ``DATA_DIR/tls``
  (owner-only files) and reused at every later start; made again only when it is
  damaged, expires within a day, or no longer names the public URL's host. Its SHA-256
  fingerprint is printed at each start, so a person can compare it with what their
  browser shows; the ``/certificate`` page (web/certificate_page.py) says how to trust it.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import ssl
import stat
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from telecircle.config import Settings
from telecircle.crypto.secret_file import fsync_folder
from telecircle.errors import TelecircleError

TLS_FOLDER = "tls"
CERT_NAME = "certificate.pem"
KEY_NAME = "key.pem"
# Apple platforms refuse server certificates valid for longer than 825 days.
SELF_SIGNED_LIFETIME = datetime.timedelta(days=825)
# A certificate this close to its end is made again at start rather than served.
RENEW_BEFORE = datetime.timedelta(days=1)
# Browsers on a clock a little behind still accept a certificate made just now.
BACKDATE = datetime.timedelta(hours=1)
ALWAYS_NAMED = ("localhost", "127.0.0.1", "::1")
CERTIFICATE_PAGE = "/certificate"
_MAX_PEM_BYTES = 1024 * 1024  # a certificate chain or key file is a few KiB
_CERT = "TELECIRCLE_TLS_CERT_FILE"
_KEY = "TELECIRCLE_TLS_KEY_FILE"
_SELF = "TELECIRCLE_TLS_SELF_SIGNED"


class TlsConfigError(TelecircleError):
    """The TLS settings or files cannot be used; the message is for the administrator."""

    code = "tls_config"
    http_status = 500


@dataclass(frozen=True, slots=True)
class SelfSigned:
    """The self-signed certificate in ``DATA_DIR/tls`` and why it is what it is."""

    cert_file: Path
    key_file: Path
    certificate: x509.Certificate
    made_because: str | None  # None: the one from an earlier start, reused


def server_ssl_context(
    settings: Settings, *, say: Callable[[str], None] = print
) -> ssl.SSLContext | None:
    """The TLS context to serve with, or None for plain HTTP.

    Raises :class:`TlsConfigError` for unusable files (see the module's docstring). With
    ``TLS_SELF_SIGNED`` the certificate is made or reused and ``say`` is given a few
    lines for the console: where it is, its fingerprint, the page that explains it.
    """
    now = datetime.datetime.now(datetime.UTC)
    if settings.tls_files_given:
        cert_file, key_file = settings.tls_cert_file, settings.tls_key_file
        check_certificate_file(cert_file, now)
        check_key_file(key_file, cert_file)
    elif settings.tls_self_signed:
        made = ensure_self_signed(settings, now)
        cert_file, key_file = made.cert_file, made.key_file
        # The public URL defaults to http://HOST:PORT; this server answers HTTPS there.
        url = settings.effective_public_url
        url = "https://" + url.removeprefix("http://") if url.startswith("http://") else url
        for line in describe_self_signed(made, url):
            say(line)
    else:
        return None
    return _context(cert_file, key_file)


def fingerprint(certificate: x509.Certificate) -> str:
    """SHA-256 of the certificate, as browsers show it (``AB:CD:...``)."""
    return certificate.fingerprint(hashes.SHA256()).hex(":").upper()


def describe_self_signed(made: SelfSigned, public_url: str) -> list[str]:
    how = "reused from an earlier start" if made.made_because is None else made.made_because
    return [
        f"HTTPS with a self-signed certificate ({how}): {made.cert_file}",
        f"  SHA-256 fingerprint {fingerprint(made.certificate)}",
        "  Browsers warn until it is trusted; compare the fingerprint, and see how to "
        f"trust it at {public_url}{CERTIFICATE_PAGE}",
    ]


# ---- configured certificate and key files -----------------------------------------------


def check_certificate_file(path: Path, now: datetime.datetime) -> x509.Certificate:
    """The first (server) certificate of the PEM chain at ``path``, if valid at ``now``."""
    data = _read(path, _CERT, "certificate")
    try:
        chain = x509.load_pem_x509_certificates(data)
    except ValueError:
        raise TlsConfigError(
            f"{_CERT}: {path} holds no PEM certificate (a file starting with "
            "-----BEGIN CERTIFICATE-----). Give the certificate chain file, e.g. "
            "fullchain.pem from Let's Encrypt."
        ) from None
    certificate = chain[0]
    if certificate.not_valid_after_utc <= now:
        raise TlsConfigError(
            f"{_CERT}: the certificate in {path} expired on "
            f"{certificate.not_valid_after_utc:%Y-%m-%d %H:%M} UTC. Renew it (e.g. certbot "
            "renew) and restart Telecircle."
        )
    if certificate.not_valid_before_utc > now:
        raise TlsConfigError(
            f"{_CERT}: the certificate in {path} is valid only from "
            f"{certificate.not_valid_before_utc:%Y-%m-%d %H:%M} UTC. Check this machine's "
            "clock, or use a certificate valid now."
        )
    return certificate


def check_key_file(path: Path, cert_file: Path) -> None:
    """Refuse a key that others may read, that needs a passphrase, or that is not the
    private key of the (first) certificate in ``cert_file``."""
    try:
        mode = path.stat().st_mode
    except OSError as exc:
        raise TlsConfigError(
            f"{_KEY}: cannot read {path} ({exc.strerror}). Give the certificate's private key file."
        ) from None
    if mode & 0o077:
        raise TlsConfigError(
            f"{_KEY}: {path} can be read or written by other users (mode "
            f"{stat.S_IMODE(mode):04o}). Restrict it to the account Telecircle runs as: "
            f"chmod 600 {path}"
        )
    data = _read(path, _KEY, "private key")
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except TypeError:
        raise TlsConfigError(
            f"{_KEY}: the key in {path} is protected by a passphrase, which a server "
            f"cannot type at start. Store it without one (owner-only): openssl pkey -in "
            f"{path} -out NEW_FILE"
        ) from None
    except (ValueError, UnsupportedAlgorithm):
        raise TlsConfigError(
            f"{_KEY}: {path} holds no PEM private key (a file starting with -----BEGIN "
            "PRIVATE KEY-----). Give the key the certificate was issued for, e.g. "
            "privkey.pem from Let's Encrypt."
        ) from None
    certificate = x509.load_pem_x509_certificates(_read(cert_file, _CERT, "certificate"))[0]
    if _public_der(key.public_key()) != _public_der(certificate.public_key()):
        raise TlsConfigError(
            f"{_KEY}: the key in {path} does not belong to the certificate in {cert_file} "
            f"({_CERT}). Give the key the certificate was issued for."
        )


def _public_der(public_key: PublicKeyTypes) -> bytes:
    return public_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _read(path: Path, setting: str, what: str) -> bytes:
    try:
        # O_NONBLOCK: a FIFO at the path must not hang the start.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        raise TlsConfigError(
            f"{setting}: cannot read the {what} file {path} ({exc.strerror}). Check the path, "
            "and that the account Telecircle runs as may read it."
        ) from None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise TlsConfigError(f"{setting}: {path} is not a regular file: give the {what} file.")
        return os.read(fd, _MAX_PEM_BYTES)
    finally:
        os.close(fd)


def _context(cert_file: Path, key_file: Path) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.set_alpn_protocols(["http/1.1"])  # aiohttp speaks HTTP/1.1 only
    try:
        # The key was checked to need no passphrase: never let OpenSSL prompt for one.
        context.load_cert_chain(cert_file, key_file, password=lambda: b"")
    except (ssl.SSLError, OSError) as exc:
        raise TlsConfigError(
            f"{_CERT} / {_KEY}: the certificate and key cannot be used together ({exc}). "
            "Give the certificate chain and the key it was issued for."
        ) from None
    return context


# ---- the self-signed certificate -------------------------------------------------------


def self_signed_files(settings: Settings) -> tuple[Path, Path]:
    folder = settings.data_dir / TLS_FOLDER
    return folder / CERT_NAME, folder / KEY_NAME


def certificate_names(settings: Settings) -> tuple[str, ...]:
    """The names a self-signed certificate covers: the public URL's host, localhost,
    the loopback addresses and the bind address (unless it is 0.0.0.0 or ::)."""
    names = [urlsplit(settings.effective_public_url).hostname or "localhost"]
    names += ALWAYS_NAMED
    try:
        bind = ipaddress.ip_address(settings.host)
    except ValueError:
        names.append(settings.host)
    else:
        if not bind.is_unspecified:
            names.append(str(bind))
    return tuple(dict.fromkeys(name.lower() for name in names))


def read_self_signed(settings: Settings) -> x509.Certificate | None:
    """The self-signed certificate in ``DATA_DIR/tls``, if there is a readable one."""
    cert_file, _ = self_signed_files(settings)
    try:
        return x509.load_pem_x509_certificate(cert_file.read_bytes())
    except (OSError, ValueError):
        return None


def ensure_self_signed(settings: Settings, now: datetime.datetime) -> SelfSigned:
    """The self-signed certificate and key in ``DATA_DIR/tls``: reused when they are
    sound and cover :func:`certificate_names`, made (again) otherwise. Refuses key
    files that group or others may read, or that are symbolic links."""
    cert_file, key_file = self_signed_files(settings)
    names = certificate_names(settings)
    why = _reason_to_make(cert_file, key_file, names, now)
    if why is None:
        certificate = x509.load_pem_x509_certificate(cert_file.read_bytes())
        return SelfSigned(cert_file, key_file, certificate, None)
    folder = cert_file.parent
    try:
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(folder, 0o700)  # whatever the umask, or an older folder's mode
        key = ec.generate_private_key(ec.SECP256R1())
        certificate = _make_certificate(key, names, now)
        key_pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        # The key first: a certificate on disk always has its key beside it.
        _write_owner_only(key_file, key_pem)
        _write_owner_only(cert_file, certificate.public_bytes(serialization.Encoding.PEM))
        fsync_folder(folder)
    except OSError as exc:
        raise TlsConfigError(
            f"{_SELF}: cannot write the self-signed certificate in {folder} "
            f"({exc.strerror}). Give the account Telecircle runs as its data folder "
            "(TELECIRCLE_DATA_DIR)."
        ) from None
    return SelfSigned(cert_file, key_file, certificate, why)


def _reason_to_make(
    cert_file: Path, key_file: Path, names: tuple[str, ...], now: datetime.datetime
) -> str | None:
    """Why a new certificate must be made, or None to reuse the one on disk."""
    try:
        key_info = os.lstat(key_file)
    except FileNotFoundError:
        return "made now"
    if stat.S_ISLNK(key_info.st_mode) or not stat.S_ISREG(key_info.st_mode):
        raise TlsConfigError(
            f"{_SELF}: {key_file} is not a regular file. Remove it, and Telecircle makes a "
            "new certificate at its next start."
        )
    if key_info.st_mode & 0o077:
        raise TlsConfigError(
            f"{_SELF}: the self-signed certificate's key {key_file} can be read or written "
            f"by other users (mode {stat.S_IMODE(key_info.st_mode):04o}). If nobody else "
            f"could have copied it: chmod 600 {key_file}; otherwise delete "
            f"{key_file.parent} and Telecircle makes a new certificate."
        )
    try:
        certificate = x509.load_pem_x509_certificate(cert_file.read_bytes())
        key = serialization.load_pem_private_key(key_file.read_bytes(), password=None)
    except (OSError, ValueError, TypeError, UnsupportedAlgorithm):
        return "made again: the earlier one was missing or damaged"
    if _public_der(key.public_key()) != _public_der(certificate.public_key()):
        return "made again: the earlier key did not match it"
    if certificate.not_valid_after_utc - RENEW_BEFORE <= now:
        return "made again: the earlier one expired"
    if not set(names) <= set(names_in(certificate)):
        return "made again: the public address changed"
    return None


def names_in(certificate: x509.Certificate) -> list[str]:
    """The DNS names (lower case) and IP addresses the certificate is for."""
    try:
        names = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except x509.ExtensionNotFound:
        return []
    dns: list[str] = names.value.get_values_for_type(x509.DNSName)
    ips = [str(ip) for ip in names.value.get_values_for_type(x509.IPAddress)]
    return [name.lower() for name in dns] + ips


def _make_certificate(
    key: ec.EllipticCurvePrivateKey, names: tuple[str, ...], now: datetime.datetime
) -> x509.Certificate:
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, names[0][:64]),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Telecircle (self-signed)"),
        ]
    )
    alternative: list[x509.GeneralName] = []
    for name in names:
        try:
            alternative.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            alternative.append(x509.DNSName(name))
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(now + SELF_SIGNED_LIFETIME)
        .add_extension(x509.SubjectAlternativeName(alternative), critical=False)
        # An end-entity certificate (not a CA): browsers let a person accept it, and
        # Firefox refuses a CA certificate used as a server's.
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )


def _write_owner_only(path: Path, data: bytes) -> None:
    """Replace ``path`` with ``data`` (mode 0600) atomically: the new content appears
    whole or not at all."""
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.unlink(missing_ok=True)  # left by a crash; never in use
    fd = os.open(
        temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600
    )
    try:
        os.fchmod(fd, 0o600)
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(temporary, path)
