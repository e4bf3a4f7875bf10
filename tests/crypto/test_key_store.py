"""The key-encryption key store: owner-only files, one per version, never replaced,
refused when unsafe, and never showing a key."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from telecircle.config import load_settings
from telecircle.crypto.envelope import KeyEncryptionKey
from telecircle.crypto.key_store import (
    FileKeyStore,
    KeyStore,
    KeyStoreError,
    KeyVersionMissing,
    key_file_name,
    open_key_store,
)


def key_files(folder: Path) -> list[str]:
    return sorted(os.listdir(folder))


def test_the_first_open_creates_an_owner_only_folder_with_version_1(tmp_path: Path) -> None:
    folder = tmp_path / "data" / "keys"
    store = open_key_store(folder, create=True)
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    assert key_files(folder) == ["kek-v0001.key"]
    path = folder / "kek-v0001.key"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    kek = store.current()
    assert kek.version == 1
    assert len(kek.secret) == 32
    assert path.read_text() == kek.secret.hex() + "\n"
    assert store.versions() == (1,)
    assert store.get(1) == kek


def test_reopening_finds_the_same_keys(tmp_path: Path) -> None:
    folder = tmp_path / "keys"
    first = open_key_store(folder, create=True).current()
    assert open_key_store(folder, create=True).current() == first
    reopened = open_key_store(folder, create=False)
    assert reopened.versions() == (1,)
    assert reopened.get(1) == first
    assert key_files(folder) == ["kek-v0001.key"]


def test_add_version_makes_the_next_version_current_and_it_survives_a_reopen(
    tmp_path: Path,
) -> None:
    folder = tmp_path / "keys"
    store: KeyStore = open_key_store(folder, create=True)
    first = store.current()
    second = store.add_version()
    third = store.add_version()
    assert (second.version, third.version) == (2, 3)
    assert len({first.secret, second.secret, third.secret}) == 3
    assert store.current() == third
    assert store.versions() == (1, 2, 3)
    assert stat.S_IMODE((folder / "kek-v0003.key").stat().st_mode) == 0o600
    reopened = open_key_store(folder, create=False)
    assert reopened.versions() == (1, 2, 3)
    assert [reopened.get(v) for v in (1, 2, 3)] == [first, second, third]
    assert key_files(folder) == ["kek-v0001.key", "kek-v0002.key", "kek-v0003.key"]


def test_a_version_added_by_another_process_is_seen_without_reopening(tmp_path: Path) -> None:
    folder = tmp_path / "keys"
    server = open_key_store(folder, create=True)
    rotated = open_key_store(folder, create=False).add_version()  # `telecircle keys rotate`
    assert server.versions() == (1, 2)
    assert server.current() == rotated


def test_getting_a_missing_version_names_it_the_file_and_the_fix(tmp_path: Path) -> None:
    folder = tmp_path / "keys"
    store = open_key_store(folder, create=True)
    store.add_version()
    store.add_version()
    (folder / "kek-v0002.key").unlink()  # lost, as from a bad restore
    reopened = open_key_store(folder, create=False)
    assert reopened.versions() == (1, 3)
    with pytest.raises(KeyVersionMissing) as missing:
        reopened.get(2)
    assert missing.value.version == 2
    assert missing.value.code == "key_version_missing"
    assert isinstance(missing.value, KeyStoreError)
    message = missing.value.message
    assert "version 2" in message
    assert str(folder / "kek-v0002.key") in message
    assert "key backup" in message
    with pytest.raises(KeyVersionMissing, match="version 7"):
        reopened.get(7)
    with pytest.raises(ValueError):
        reopened.get(0)


def test_add_version_never_reuses_the_number_of_a_lost_older_version(tmp_path: Path) -> None:
    folder = tmp_path / "keys"
    store = open_key_store(folder, create=True)
    store.add_version()
    store.add_version()
    (folder / "kek-v0002.key").unlink()
    assert store.add_version().version == 4


def test_verify_refuses_a_missing_folder_and_does_not_create_it(tmp_path: Path) -> None:
    folder = tmp_path / "keys"
    with pytest.raises(KeyStoreError, match="does not exist") as refused:
        open_key_store(folder, create=False)
    assert refused.value.code == "key_store_missing"
    assert str(folder) in refused.value.message
    assert "key backup" in refused.value.message
    assert not folder.exists()


def test_verify_refuses_a_folder_without_versions(tmp_path: Path) -> None:
    folder = tmp_path / "keys"
    folder.mkdir(mode=0o700)
    (folder / "notes.txt").write_text("not a key")
    with pytest.raises(KeyStoreError, match="holds no key-encryption key") as refused:
        open_key_store(folder, create=False)
    assert refused.value.code == "key_store_empty"
    assert str(folder) in refused.value.message
    assert key_files(folder) == ["notes.txt"]
    assert open_key_store(folder, create=True).versions() == (1,)


def test_a_symlinked_key_file_is_refused_not_replaced(tmp_path: Path) -> None:
    folder = tmp_path / "keys"
    open_key_store(folder, create=True).add_version()
    elsewhere = tmp_path / "elsewhere.key"
    (folder / "kek-v0002.key").rename(elsewhere)
    (folder / "kek-v0002.key").symlink_to(elsewhere)
    for create in (True, False):
        with pytest.raises(KeyStoreError, match="symbolic link") as refused:
            open_key_store(folder, create=create)
        assert str(folder / "kek-v0002.key") in refused.value.message
    assert (folder / "kek-v0002.key").is_symlink()


def test_a_symlinked_key_folder_is_refused(tmp_path: Path) -> None:
    real = tmp_path / "real-keys"
    open_key_store(real, create=True)
    link = tmp_path / "keys"
    link.symlink_to(real)
    with pytest.raises(KeyStoreError, match="symbolic link") as refused:
        open_key_store(link, create=True)
    assert "TELECIRCLE_KEY_DIR" in refused.value.message
    assert key_files(real) == ["kek-v0001.key"]


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o620, 0o604, 0o602])
def test_a_key_file_other_users_can_use_is_refused_with_the_fix(tmp_path: Path, mode: int) -> None:
    folder = tmp_path / "keys"
    kek = open_key_store(folder, create=True).current()
    path = folder / "kek-v0001.key"
    path.chmod(mode)
    for create in (True, False):
        with pytest.raises(KeyStoreError) as refused:
            open_key_store(folder, create=create)
        assert f"chmod 600 {path}" in refused.value.message
        assert f"{mode:04o}" in refused.value.message
        assert kek.secret.hex() not in refused.value.message
    path.chmod(0o600)
    assert open_key_store(folder, create=False).current() == kek


@pytest.mark.skipif(os.geteuid() != 0, reason="giving a file to another user needs root")
def test_keys_owned_by_another_user_are_refused(tmp_path: Path) -> None:
    folder = tmp_path / "keys"
    kek = open_key_store(folder, create=True).current()
    path = folder / "kek-v0001.key"
    os.chown(path, 65534, 65534)  # nobody: another account could rewrite the key
    with pytest.raises(KeyStoreError, match="belongs to another user") as refused:
        open_key_store(folder, create=False)
    assert f"chown {os.geteuid()} {path}" in refused.value.message
    os.chown(path, 0, 0)
    os.chown(folder, 65534, 65534)
    with pytest.raises(KeyStoreError, match="belongs to another user"):
        open_key_store(folder, create=False)
    os.chown(folder, 0, 0)
    assert open_key_store(folder, create=False).current() == kek


@pytest.mark.parametrize("mode", [0o755, 0o750, 0o701, 0o710])
def test_a_key_folder_other_users_can_use_is_refused_with_the_fix(
    tmp_path: Path, mode: int
) -> None:
    folder = tmp_path / "keys"
    store = open_key_store(folder, create=True)
    folder.chmod(mode)
    for create in (True, False):
        with pytest.raises(KeyStoreError, match="other users") as refused:
            open_key_store(folder, create=create)
        assert f"chmod 700 {folder}" in refused.value.message
    # A store already open notices too, before it lists or adds a version.
    with pytest.raises(KeyStoreError, match="chmod 700"):
        store.current()
    with pytest.raises(KeyStoreError, match="chmod 700"):
        store.add_version()
    assert key_files(folder) == ["kek-v0001.key"]


def test_a_key_folder_that_is_a_file_is_refused(tmp_path: Path) -> None:
    folder = tmp_path / "keys"
    folder.write_text("oops")
    with pytest.raises(KeyStoreError, match="not a folder"):
        open_key_store(folder, create=True)
    assert folder.read_text() == "oops"


@pytest.mark.parametrize(
    "content",
    [b"", b"not a key\n", b"ab" * 31 + b"\n", b"ab" * 33 + b"\n", b"zz" * 32 + b"\n"],
    ids=["empty", "text", "short", "long", "not-hex"],
)
def test_a_malformed_key_file_is_refused_not_replaced(tmp_path: Path, content: bytes) -> None:
    folder = tmp_path / "keys"
    open_key_store(folder, create=True)
    path = folder / "kek-v0002.key"
    path.write_bytes(content)
    path.chmod(0o600)
    for create in (True, False):
        with pytest.raises(KeyStoreError, match="damaged") as refused:
            open_key_store(folder, create=create)
        assert str(path) in refused.value.message
        assert "key backup" in refused.value.message
        if content:
            assert content.decode().strip() not in refused.value.message
    assert path.read_bytes() == content


@pytest.mark.timeout(30)  # a FIFO opened for reading without O_NONBLOCK would hang here
def test_a_fifo_planted_at_a_key_path_is_refused_without_hanging(tmp_path: Path) -> None:
    folder = tmp_path / "keys"
    open_key_store(folder, create=True)
    path = folder / "kek-v0002.key"
    os.mkfifo(path, 0o600)
    with pytest.raises(KeyStoreError, match="not a regular file") as refused:
        open_key_store(folder, create=False)
    assert str(path) in refused.value.message
    assert "key backup" in refused.value.message
    assert stat.S_ISFIFO(path.lstat().st_mode)


def test_a_folder_at_a_key_path_is_refused(tmp_path: Path) -> None:
    folder = tmp_path / "keys"
    open_key_store(folder, create=True)
    (folder / "kek-v0002.key").mkdir(mode=0o700)
    with pytest.raises(KeyStoreError, match="not a regular file"):
        open_key_store(folder, create=True)


def test_files_not_named_like_a_version_and_leftovers_are_ignored(tmp_path: Path) -> None:
    folder = tmp_path / "keys"
    kek = open_key_store(folder, create=True).current()
    junk = {
        ".kek-v0002.key.0123456789abcdef.tmp": b"ab" * 32 + b"\n",  # a crash's leftover
        "kek-v0002.key.tmp": b"garbage",
        "kek-v2.key": b"garbage",
        "kek-v00002.key": b"garbage",
        "kek-v0000.key": b"garbage",
        "kek-v0002.key~": b"garbage",
        "README": b"garbage",
    }
    for name, content in junk.items():
        (folder / name).write_bytes(content)
        (folder / name).chmod(0o644)
    os.mkfifo(folder / "kek-v0003.key.tmp")
    store = open_key_store(folder, create=False)
    assert store.versions() == (1,)
    assert store.current() == kek
    assert store.add_version().version == 2
    assert open_key_store(folder, create=False).versions() == (1, 2)
    for name, content in junk.items():
        assert (folder / name).read_bytes() == content


def test_concurrent_first_starts_agree_on_version_1(tmp_path: Path) -> None:
    folder = tmp_path / "data" / "keys"
    keys: list[KeyEncryptionKey] = []
    errors: list[BaseException] = []
    barrier = threading.Barrier(16)

    def start() -> None:
        barrier.wait()
        try:
            keys.append(open_key_store(folder, create=True).current())
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=start) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert len(keys) == 16
    assert {key.version for key in keys} == {1}
    assert len({key.secret for key in keys}) == 1
    assert key_files(folder) == ["kek-v0001.key"]


def test_concurrent_add_version_from_threads_gives_each_caller_its_own_version(
    tmp_path: Path,
) -> None:
    folder = tmp_path / "keys"
    open_key_store(folder, create=True)
    added: list[KeyEncryptionKey] = []
    errors: list[BaseException] = []
    barrier = threading.Barrier(16)

    def rotate() -> None:
        store = open_key_store(folder, create=False)  # as separate processes would
        barrier.wait()
        try:
            for _ in range(4):
                added.append(store.add_version())
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=rotate) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert sorted(kek.version for kek in added) == list(range(2, 66))
    assert len({kek.secret for kek in added}) == 64
    reopened = open_key_store(folder, create=False)  # every file whole and owner-only
    assert reopened.versions() == tuple(range(1, 66))
    assert all(reopened.get(kek.version) == kek for kek in added)
    assert key_files(folder) == [key_file_name(v) for v in range(1, 66)]


ADD_VERSIONS = """
import sys
from pathlib import Path
from telecircle.crypto.key_store import open_key_store

store = open_key_store(Path(sys.argv[1]), create=False)
for _ in range(int(sys.argv[2])):
    kek = store.add_version()
    print(kek.version, kek.secret.hex(), flush=True)
"""


def test_concurrent_add_version_from_processes_gives_each_caller_its_own_version(
    tmp_path: Path,
) -> None:
    folder = tmp_path / "keys"
    open_key_store(folder, create=True)
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", ADD_VERSIONS, str(folder), "10"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(4)
    ]
    added: dict[int, str] = {}
    for process in processes:
        out, err = process.communicate(timeout=60)
        assert process.returncode == 0, err
        for line in out.splitlines():
            version, secret = line.split()
            assert int(version) not in added
            added[int(version)] = secret
    assert sorted(added) == list(range(2, 42))
    reopened = open_key_store(folder, create=False)
    assert reopened.versions() == tuple(range(1, 42))
    assert all(reopened.get(v).secret.hex() == secret for v, secret in added.items())
    assert key_files(folder) == [key_file_name(v) for v in range(1, 42)]


def test_no_key_shows_in_reprs_strings_or_errors(tmp_path: Path) -> None:
    folder = tmp_path / "keys"
    store = open_key_store(folder, create=True)
    keys = [store.current(), store.add_version()]
    (folder / "kek-v0002.key").chmod(0o644)
    errors: list[KeyStoreError] = []
    for attempt in (lambda: open_key_store(folder, create=False), lambda: store.get(9)):
        try:
            attempt()
        except KeyStoreError as exc:
            errors.append(exc)
    assert len(errors) == 2
    shown = [repr(store), str(store), repr(keys), *(f"{kek}" for kek in keys)]
    shown += [text for error in errors for text in (str(error), repr(error), error.message)]
    for text in shown:
        for kek in keys:
            assert kek.secret.hex() not in text
            assert kek.secret.hex().upper() not in text
            assert repr(kek.secret) not in text
    assert str(folder) in repr(store)


def test_a_store_built_directly_does_no_io_until_used(tmp_path: Path) -> None:
    folder = tmp_path / "keys"
    store = FileKeyStore(folder)
    assert store.folder == folder
    assert not folder.exists()
    with pytest.raises(KeyStoreError, match="does not exist"):
        store.versions()


def test_the_key_folder_defaults_to_the_data_folder_and_can_be_set(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("TELECIRCLE_KEY_DIR", raising=False)
    assert load_settings(data_dir=tmp_path / "data").effective_key_dir == tmp_path / "data" / "keys"
    monkeypatch.setenv("TELECIRCLE_KEY_DIR", str(tmp_path / "vault"))
    assert load_settings(data_dir=tmp_path / "data").effective_key_dir == tmp_path / "vault"
