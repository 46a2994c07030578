"""Apple signing material: loading and checking it, and signing a pass manifest.

The checks run when a merchant is configured and when a service starts, so a wrong file is a
clear message naming the setting and the path, never a stack trace at a phone's first request.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import pkcs7
from cryptography.x509.oid import NameOID

from services.core.errors import NotConfigured
from services.core.pki import read_certificate

PASS_TYPE_EXTENSION_OID = x509.ObjectIdentifier("1.2.840.113635.100.6.1.16")
"""Apple marks pass type certificates with this extension."""

SigningKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey


@dataclass(frozen=True, slots=True)
class SigningMaterial:
    pass_type_identifier: str
    team_identifier: str
    certificate: x509.Certificate
    private_key: SigningKey
    wwdr: x509.Certificate

    def sign(self, manifest: bytes) -> bytes:
        """A detached PKCS#7 (DER) signature with the signing time and the WWDR intermediate."""
        return (
            pkcs7.PKCS7SignatureBuilder()
            .set_data(manifest)
            .add_signer(self.certificate, self.private_key, hashes.SHA256())
            .add_certificate(self.wwdr)
            .sign(
                serialization.Encoding.DER,
                [pkcs7.PKCS7Options.DetachedSignature, pkcs7.PKCS7Options.Binary],
            )
        )


@dataclass(frozen=True, slots=True)
class SigningFiles:
    """Where a merchant's material lives; the names are the settings an operator sets.

    The same checks hold a Wallet order's Order Type ID certificate (``kind``, ``section``):
    Apple issues both from the WWDR intermediate, naming the identifier in UID and CN.
    """

    merchant: str
    pass_type_identifier: str
    team_identifier: str
    certificate_path: Path
    key_path: Path
    wwdr_path: Path
    kind: str = "pass type"
    section: str = "apple"
    identifier_setting: str = "apple.pass_type_identifier"


def _problem(files: SigningFiles, setting: str, path: Path, what: str) -> NotConfigured:
    return NotConfigured(
        f"merchant {files.merchant!r}: {files.section}.{setting} ({path}): {what}",
        merchant=files.merchant,
        setting=f"{files.section}.{setting}",
        path=str(path),
    )


def _read(files: SigningFiles, setting: str, path: Path) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise _problem(files, setting, path, "file not found") from None
    except OSError as exc:
        raise _problem(files, setting, path, f"cannot be read ({exc.strerror})") from None


def _certificate(files: SigningFiles, setting: str, path: Path) -> x509.Certificate:
    _read(files, setting, path)
    try:
        return read_certificate(path)
    except ValueError:
        raise _problem(files, setting, path, "not a PEM or DER X.509 certificate") from None


def _subject(cert: x509.Certificate, oid: x509.ObjectIdentifier) -> str | None:
    values = cert.subject.get_attributes_for_oid(oid)
    return str(values[0].value) if values else None


_CN_PREFIX = re.compile(r"^(?:Pass|Order) Type ID: ")


def load_signing_material(files: SigningFiles) -> SigningMaterial:
    """Load and cross-check the certificate, key and WWDR intermediate of one merchant."""
    certificate = _certificate(files, "certificate_path", files.certificate_path)
    wwdr = _certificate(files, "wwdr_path", files.wwdr_path)
    key_data = _read(files, "key_path", files.key_path)
    try:
        key = serialization.load_pem_private_key(key_data, password=None)
    except (ValueError, TypeError):
        try:
            key = serialization.load_der_private_key(key_data, password=None)
        except (ValueError, TypeError):
            raise _problem(
                files, "key_path", files.key_path, "not an unencrypted PEM or DER private key"
            ) from None
    if not isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey):
        raise _problem(files, "key_path", files.key_path, "only RSA and EC keys can sign")

    public = serialization.PublicFormat.SubjectPublicKeyInfo
    if key.public_key().public_bytes(serialization.Encoding.DER, public) != (
        certificate.public_key().public_bytes(serialization.Encoding.DER, public)
    ):
        raise _problem(
            files,
            "key_path",
            files.key_path,
            f"does not match the certificate in {files.certificate_path}",
        )

    uid = _subject(certificate, NameOID.USER_ID)
    common_name = _subject(certificate, NameOID.COMMON_NAME) or ""
    cert_pass_type = uid or _CN_PREFIX.sub("", common_name)
    if cert_pass_type != files.pass_type_identifier:
        raise _problem(
            files,
            "certificate_path",
            files.certificate_path,
            f"is for {files.kind} {cert_pass_type!r}, not the merchant's "
            f"{files.pass_type_identifier!r} ({files.identifier_setting})",
        )
    team = _subject(certificate, NameOID.ORGANIZATIONAL_UNIT_NAME)
    if team is not None and team != files.team_identifier:
        raise _problem(
            files,
            "certificate_path",
            files.certificate_path,
            f"belongs to team {team!r}, not the merchant's {files.team_identifier!r} "
            "(apple.team_identifier)",
        )
    now = datetime.now(UTC)
    if not certificate.not_valid_before_utc <= now <= certificate.not_valid_after_utc:
        raise _problem(
            files,
            "certificate_path",
            files.certificate_path,
            f"is not valid now (valid {certificate.not_valid_before_utc:%Y-%m-%d} to "
            f"{certificate.not_valid_after_utc:%Y-%m-%d})",
        )
    try:
        certificate.verify_directly_issued_by(wwdr)
    except (ValueError, TypeError, InvalidSignature) as exc:
        raise _problem(
            files,
            "wwdr_path",
            files.wwdr_path,
            f"did not issue the certificate in {files.certificate_path} "
            "(use Apple's WWDR G4 intermediate)",
        ) from exc
    return SigningMaterial(
        pass_type_identifier=files.pass_type_identifier,
        team_identifier=files.team_identifier,
        certificate=certificate,
        private_key=key,
        wwdr=wwdr,
    )
