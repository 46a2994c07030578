"""A local key chain shaped like Apple's, so the real signing and push code runs everywhere.

root -> "WWDR" intermediate -> pass type certificate (UID and CN "Pass Type ID: <id>", OU = team
id, Apple's pass-type extension) and Order Type ID certificates for Wallet Orders (UID and CN
"Order Type ID: <id>", OU = team id), plus a TLS certificate for the local APNs stand-in. Real
certificates replace these by configuration alone.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from services.core.pki import (
    build_certificate,
    new_rsa_key,
    read_certificate,
    tls_server_certificate,
    write_certificate,
    write_private_key,
)
from services.passes.apple.signing import PASS_TYPE_EXTENSION_OID

ROOT_NAME = "Passpost Development Root CA"
WWDR_NAME = "Passpost Development WWDR Certification Authority"
STANDIN_HOSTS = ["localhost", "127.0.0.1", "::1"]


@dataclass(frozen=True, slots=True)
class DevChain:
    root_certificate: Path
    wwdr_certificate: Path
    apns_standin_certificate: Path
    apns_standin_key: Path
    client_ca_bundle: Path
    """Root and WWDR together: what the stand-in trusts for client certificates."""


@dataclass(frozen=True, slots=True)
class PassTypeFiles:
    certificate: Path
    key: Path


def _load_key(path: Path) -> rsa.RSAPrivateKey:
    key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    if not isinstance(key, rsa.RSAPrivateKey):
        raise ValueError(f"{path}: the development chain uses RSA keys")
    return key


def ensure_dev_chain(keys_dir: Path) -> DevChain:
    """Create the root, WWDR-style intermediate and stand-in TLS certificate once."""
    chain = DevChain(
        root_certificate=keys_dir / "dev-root.pem",
        wwdr_certificate=keys_dir / "dev-wwdr.pem",
        apns_standin_certificate=keys_dir / "apns-standin.pem",
        apns_standin_key=keys_dir / "apns-standin.key",
        client_ca_bundle=keys_dir / "dev-ca-bundle.pem",
    )
    root_key_path = keys_dir / "dev-root.key"
    wwdr_key_path = keys_dir / "dev-wwdr.key"
    if not (chain.root_certificate.exists() and root_key_path.exists()):
        root_key = new_rsa_key()
        root = build_certificate(
            x509.Name(
                [
                    x509.NameAttribute(NameOID.COMMON_NAME, ROOT_NAME),
                    x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Passpost Development"),
                ]
            ),
            root_key.public_key(),
            issuer=None,
            issuer_key=root_key,
            days=3650,
            ca=True,
        )
        write_private_key(root_key_path, root_key)
        write_certificate(chain.root_certificate, root)
        for stale in (
            chain.wwdr_certificate,
            chain.apns_standin_certificate,
            chain.client_ca_bundle,
        ):
            stale.unlink(missing_ok=True)
    root = read_certificate(chain.root_certificate)
    root_key = _load_key(root_key_path)

    if not (chain.wwdr_certificate.exists() and wwdr_key_path.exists()):
        wwdr_key = new_rsa_key()
        wwdr = build_certificate(
            x509.Name(
                [
                    x509.NameAttribute(NameOID.COMMON_NAME, WWDR_NAME),
                    x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, "G4"),
                    x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Passpost Development"),
                ]
            ),
            wwdr_key.public_key(),
            issuer=root,
            issuer_key=root_key,
            days=3650,
            ca=True,
        )
        write_private_key(wwdr_key_path, wwdr_key)
        write_certificate(chain.wwdr_certificate, wwdr)
        chain.client_ca_bundle.unlink(missing_ok=True)

    if not chain.client_ca_bundle.exists():
        chain.client_ca_bundle.write_bytes(
            chain.root_certificate.read_bytes() + chain.wwdr_certificate.read_bytes()
        )

    if not (chain.apns_standin_certificate.exists() and chain.apns_standin_key.exists()):
        cert, key = tls_server_certificate(STANDIN_HOSTS, issuer=root, issuer_key=root_key)
        write_private_key(chain.apns_standin_key, key)
        write_certificate(chain.apns_standin_certificate, cert)
    return chain


def ensure_pass_type_certificate(
    keys_dir: Path, pass_type_identifier: str, team_identifier: str, organization: str
) -> PassTypeFiles:
    """Issue a pass type certificate from the development WWDR, as Apple's portal would."""
    return _ensure_certificate(
        keys_dir,
        pass_type_identifier,
        f"Pass Type ID: {pass_type_identifier}",
        team_identifier,
        organization,
        [(x509.UnrecognizedExtension(PASS_TYPE_EXTENSION_OID, b"\x05\x00"), False)],
    )


def ensure_order_type_certificate(
    keys_dir: Path, order_type_identifier: str, team_identifier: str, organization: str
) -> PassTypeFiles:
    """Issue an Order Type ID certificate (Wallet Orders) from the development WWDR."""
    return _ensure_certificate(
        keys_dir,
        order_type_identifier,
        f"Order Type ID: {order_type_identifier}",
        team_identifier,
        organization,
        [],
    )


def _ensure_certificate(
    keys_dir: Path,
    identifier: str,
    common_name: str,
    team_identifier: str,
    organization: str,
    marks: list[tuple[x509.ExtensionType, bool]],
) -> PassTypeFiles:
    """A signing (and APNs client) certificate for ``identifier``, issued once."""
    ensure_dev_chain(keys_dir)
    files = PassTypeFiles(
        certificate=keys_dir / f"{identifier}.pem", key=keys_dir / f"{identifier}.key"
    )
    if files.certificate.exists() and files.key.exists():
        return files
    wwdr = read_certificate(keys_dir / "dev-wwdr.pem")
    wwdr_key = _load_key(keys_dir / "dev-wwdr.key")
    key = new_rsa_key()
    cert = build_certificate(
        x509.Name(
            [
                x509.NameAttribute(NameOID.USER_ID, identifier),
                x509.NameAttribute(NameOID.COMMON_NAME, common_name),
                x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, team_identifier),
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization),
                x509.NameAttribute(NameOID.COUNTRY_NAME, "US"),
            ]
        ),
        key.public_key(),
        issuer=wwdr,
        issuer_key=wwdr_key,
        days=365,
        extensions=[*marks, (x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), False)],
    )
    write_private_key(files.key, key)
    write_certificate(files.certificate, cert)
    return files
