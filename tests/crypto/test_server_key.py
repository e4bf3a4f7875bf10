"""The server key file: made once with owner-only permissions, refused when unsafe."""

from __future__ import annotations

import os
import stat
import threading
from pathlib import Path

import pytest

from telecircle.crypto.server_key import (
    AUDIT_HEAD,
    INVITE_SIGNING,
    ServerKey,
    ServerKeyError,
    load_or_create_server_key,
    load_server_key,
)


def test_first_start_creates_an_owner_only_key_that_later_starts_read(tmp_path: Path) -> None:
    path = tmp_path / "data" / "server.key"
    key = load_or_create_server_key(path)
    assert len(key.master) == 32
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert path.read_text() == key.master.hex() + "\n"
    assert load_or_create_server_key(path) == key
    assert load_server_key(path) == key
    assert [p.name for p in path.parent.iterdir()] == ["server.key"]  # no temporary left


def test_a_key_readable_by_others_is_refused_with_the_fix(tmp_path: Path) -> None:
    path = tmp_path / "server.key"
    load_or_create_server_key(path)
    path.chmod(0o644)
    with pytest.raises(ServerKeyError) as refused:
        load_or_create_server_key(path)
    assert str(path) in refused.value.message
    assert f"chmod 600 {path}" in refused.value.message
    path.chmod(0o620)  # group-writable is as bad
    with pytest.raises(ServerKeyError, match="chmod 600"):
        load_server_key(path)


def test_a_symlink_is_refused(tmp_path: Path) -> None:
    real = tmp_path / "real.key"
    load_or_create_server_key(real)
    link = tmp_path / "server.key"
    link.symlink_to(real)
    with pytest.raises(ServerKeyError, match="symbolic link"):
        load_or_create_server_key(link)
    assert link.is_symlink()  # not replaced either


@pytest.mark.parametrize(
    "content",
    [b"", b"not a key\n", b"ab" * 31 + b"\n", b"ab" * 33 + b"\n", b"zz" * 32 + b"\n"],
    ids=["empty", "text", "short", "long", "not-hex"],
)
def test_a_malformed_key_file_is_refused_not_replaced(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "server.key"
    path.write_bytes(content)
    path.chmod(0o600)
    with pytest.raises(ServerKeyError, match="damaged") as refused:
        load_or_create_server_key(path)
    assert str(path) in refused.value.message
    assert path.read_bytes() == content


def test_a_folder_in_place_of_the_key_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "server.key"
    path.mkdir(mode=0o700)
    with pytest.raises(ServerKeyError, match="not a regular file"):
        load_server_key(path)


def test_load_without_create_reports_a_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "server.key"
    with pytest.raises(ServerKeyError, match="does not exist") as refused:
        load_server_key(path)
    assert refused.value.code == "server_key_missing"
    assert not path.exists()


def test_concurrent_first_starts_agree_on_one_key(tmp_path: Path) -> None:
    path = tmp_path / "data" / "server.key"
    keys: list[ServerKey] = []
    errors: list[BaseException] = []
    barrier = threading.Barrier(16)

    def start() -> None:
        barrier.wait()
        try:
            keys.append(load_or_create_server_key(path))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=start) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert len(keys) == 16
    assert len({key.master for key in keys}) == 1
    assert sorted(os.listdir(path.parent)) == ["server.key"]


def test_repr_and_str_hide_the_key(tmp_path: Path) -> None:
    key = load_or_create_server_key(tmp_path / "server.key")
    for shown in (repr(key), str(key), f"{key}", repr([key])):
        assert key.master.hex() not in shown
        assert repr(key.master) not in shown


def test_derived_keys_differ_by_purpose_and_are_stable() -> None:
    key = ServerKey(bytes(range(32)))
    audit, invites = key.derive(AUDIT_HEAD), key.derive(INVITE_SIGNING)
    assert len(audit) == len(invites) == 32
    assert audit != invites
    assert audit != key.master
    assert ServerKey(bytes(range(32))).derive(AUDIT_HEAD) == audit
    assert ServerKey(bytes(32)).derive(AUDIT_HEAD) != audit
    with pytest.raises(ValueError):
        key.derive("")


def test_a_key_must_be_32_bytes() -> None:
    with pytest.raises(ValueError):
        ServerKey(b"short")
