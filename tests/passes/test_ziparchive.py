"""The small ZIP writer: Python's zipfile and Info-ZIP's unzip read back what it wrote."""

from __future__ import annotations

import io
import shutil
import subprocess
import zipfile
from pathlib import Path

import pytest

from services.passes.apple.ziparchive import MAX_SIZE, STORED, Entry, archive, layout

FILES = {
    "icon.png": bytes(range(256)) * 8,
    "logo@2x.png": b"",
    "pass.json": b'{"formatVersion":1,"description":"' + b"card " * 200 + b'"}',
    "sk.lproj/pass.strings": b'"label.status" = "Stav";\n' * 30,
    "signature": bytes(range(255, -1, -1)) * 3,
}
STORED_NAMES = ("icon.png", "logo@2x.png")


def _entries() -> list[Entry]:
    return [
        Entry.stored(name, data) if name in STORED_NAMES else Entry.deflated(name, data)
        for name, data in FILES.items()
    ]


def test_zipfile_reads_every_file_back() -> None:
    with zipfile.ZipFile(io.BytesIO(archive(_entries()))) as bundle:
        assert bundle.testzip() is None
        infos = bundle.infolist()
        assert [info.filename for info in infos] == list(FILES)
        for info in infos:
            assert bundle.read(info) == FILES[info.filename]
            assert not info.is_dir()
            assert info.date_time == (1980, 1, 1, 0, 0, 0)
            expected = zipfile.ZIP_STORED if info.filename in STORED_NAMES else zipfile.ZIP_DEFLATED
            assert info.compress_type == expected
    deflated = {info.filename: info.compress_size for info in infos}
    assert deflated["pass.json"] < len(FILES["pass.json"]) / 4


def test_unzip_finds_no_errors(tmp_path: Path) -> None:
    unzip = shutil.which("unzip")
    if unzip is None:
        pytest.skip("Info-ZIP unzip is not installed")
    path = tmp_path / "bundle.zip"
    path.write_bytes(archive(_entries()))
    tested = subprocess.run([unzip, "-t", path], capture_output=True, text=True, check=False)
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert "No errors detected" in tested.stdout
    for name in FILES:
        assert f"testing: {name}" in tested.stdout


def test_records_laid_out_once_give_the_same_bytes() -> None:
    entries = _entries()
    whole = archive(entries)
    assert archive(entries[2:], head=layout(entries[:2])) == whole
    assert archive(_entries()) == whole  # the same files, the same bytes


def test_an_empty_archive_opens() -> None:
    with zipfile.ZipFile(io.BytesIO(archive([]))) as bundle:
        assert bundle.namelist() == []


def test_sizes_that_need_zip64_are_refused() -> None:
    with pytest.raises(ValueError, match="ZIP64"):
        archive([Entry("huge.png", STORED, 0, MAX_SIZE + 1, b"")])
