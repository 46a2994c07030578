"""Unusable signing material is a clear message naming the setting and the file."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from services.core.errors import NotConfigured
from services.onboarding import DEV_TEAM_IDENTIFIER
from services.passes.apple.devchain import ensure_pass_type_certificate
from services.passes.apple.signing import SigningFiles, load_signing_material


@pytest.fixture
def files(dev_keys: Path) -> SigningFiles:
    return SigningFiles(
        merchant="shop",
        pass_type_identifier="pass.dev.passpost.shop",
        team_identifier=DEV_TEAM_IDENTIFIER,
        certificate_path=dev_keys / "pass.dev.passpost.shop.pem",
        key_path=dev_keys / "pass.dev.passpost.shop.key",
        wwdr_path=dev_keys / "dev-wwdr.pem",
    )


def test_good_material_loads(files: SigningFiles) -> None:
    material = load_signing_material(files)
    assert material.pass_type_identifier == "pass.dev.passpost.shop"
    assert material.sign(b"{}")[:1] == b"\x30"  # a DER SEQUENCE


def _problem(files: SigningFiles) -> NotConfigured:
    with pytest.raises(NotConfigured) as caught:
        load_signing_material(files)
    return caught.value


def test_missing_certificate(files: SigningFiles, tmp_path: Path) -> None:
    missing = tmp_path / "nope.pem"
    error = _problem(replace(files, certificate_path=missing))
    assert error.details["setting"] == "apple.certificate_path"
    assert str(missing) in error.message
    assert "file not found" in error.message


def test_unreadable_key(files: SigningFiles, tmp_path: Path) -> None:
    directory = tmp_path / "a-directory.key"
    directory.mkdir()
    error = _problem(replace(files, key_path=directory))
    assert error.details["setting"] == "apple.key_path"
    assert "cannot be read" in error.message


def test_garbage_certificate(files: SigningFiles, tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a certificate")
    error = _problem(replace(files, certificate_path=garbage))
    assert "not a PEM or DER X.509 certificate" in error.message


def test_garbage_key_is_reported_without_its_content(files: SigningFiles, tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.key"
    garbage.write_text("-----BEGIN PRIVATE KEY-----\nc2VjcmV0\n-----END PRIVATE KEY-----\n")
    error = _problem(replace(files, key_path=garbage))
    assert error.details["setting"] == "apple.key_path"
    assert "c2VjcmV0" not in error.message


def test_key_that_does_not_match_the_certificate(files: SigningFiles, dev_keys: Path) -> None:
    error = _problem(replace(files, key_path=dev_keys / "pass.dev.passpost.other.key"))
    assert error.details["setting"] == "apple.key_path"
    assert "does not match the certificate" in error.message


def test_certificate_of_another_pass_type(files: SigningFiles, dev_keys: Path) -> None:
    error = _problem(replace(files, pass_type_identifier="pass.dev.passpost.other"))
    assert error.details["setting"] == "apple.certificate_path"
    assert "'pass.dev.passpost.shop'" in error.message
    assert "apple.pass_type_identifier" in error.message


def test_certificate_of_another_team(files: SigningFiles) -> None:
    error = _problem(replace(files, team_identifier="ABCDE12345"))
    assert "belongs to team 'PASSPOST42'" in error.message


def test_wwdr_that_did_not_issue_the_certificate(files: SigningFiles, dev_keys: Path) -> None:
    error = _problem(replace(files, wwdr_path=dev_keys / "dev-root.pem"))
    assert error.details["setting"] == "apple.wwdr_path"
    assert "WWDR G4" in error.message


def test_certificate_from_another_chain(files: SigningFiles, tmp_path: Path) -> None:
    foreign = ensure_pass_type_certificate(
        tmp_path, "pass.dev.passpost.shop", DEV_TEAM_IDENTIFIER, "Shop"
    )
    error = _problem(replace(files, certificate_path=foreign.certificate, key_path=foreign.key))
    assert error.details["setting"] == "apple.wwdr_path"
