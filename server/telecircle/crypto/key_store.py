"""The versioned key-encryption keys (KEKs) that wrap each session's data key (DESIGN §5).

:class:`KeyStore` is the seam: the notes service asks it for the newest KEK (to wrap a
new data key), for a given version (to unwrap one) and for a new version (rotation).
:class:`FileKeyStore` is the default, a folder outside the database (``DATA_DIR/keys``
unless ``TELECIRCLE_KEY_DIR`` says otherwise, mode 0700) holding one owner-only file per
version, ``kek-v0001.key``, ``kek-v0002.key``, … each with 64 hex digits and a newline.
A KMS could take its place by implementing the same four methods.

Files in the folder whose names are not exactly what :func:`key_file_name` gives for a
version from 1 to 999,999,999 (so versions fit a 32-bit database column) are ignored:
notably the ``.kek-vNNNN.key.RANDOM.tmp`` file a crash can leave during creation, which
holds a key that was never used and may be deleted. A version file is never replaced
or deleted by this module; losing one makes the data keys it wrapped, and so their
notes, unreadable. Back the folder up, apart from the database.

Keep versions, not secrets, in logs and errors: no repr, str or message here shows a key.
"""

from __future__ import annotations

import errno
import os
import re
import secrets
import stat
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from telecircle.crypto.envelope import KEY_BYTES, KeyEncryptionKey
from telecircle.crypto.secret_file import create_secret_file, fsync_folder, read_secret_file
from telecircle.errors import TelecircleError

_KEY_FILE_NAME = re.compile(r"kek-v(?P<version>[0-9]{4,9})\.key")
_KEY_FILE_LABEL = "key-encryption key file"
MAX_VERSION = 999_999_999


class KeyStoreError(TelecircleError):
    """The key folder or one of its files is missing, unsafe or malformed.

    The message names the folder or file and the fix; it is meant for the administrator
    and never contains key material.
    """

    code = "key_store"
    http_status = 500


class KeyVersionMissing(KeyStoreError):
    """A key-encryption key version that was asked for has no file.

    ``version`` is the missing version; the message names it, where it was looked for
    and the fix (restore it from the key backup).
    """

    code = "key_version_missing"

    def __init__(self, version: int, path: Path) -> None:
        super().__init__(
            f"Key-encryption key version {version} is missing: there is no file {path}. "
            f"Restore it from your key backup; the data keys wrapped under version {version}, "
            "and the notes they protect, cannot be read without it."
        )
        self.version = version


class KeyStore(Protocol):
    """Where the key-encryption keys live; the seam a KMS could replace.

    Versions start at 1 and only grow; a version, once created, always means the same
    secret. The methods are synchronous: the file store answers from memory or from a
    65-byte local file. An implementation that waits on the network (a KMS) is called
    by its users through ``asyncio.to_thread`` (or wrapped so), never on the event loop.
    """

    def versions(self) -> tuple[int, ...]:
        """Every version present, ascending (possibly empty)."""
        ...

    def get(self, version: int) -> KeyEncryptionKey:
        """The KEK of ``version``; raises :class:`KeyVersionMissing` if it is gone."""
        ...

    def current(self) -> KeyEncryptionKey:
        """The newest KEK: the one new data keys are wrapped under."""
        ...

    def add_version(self) -> KeyEncryptionKey:
        """A new KEK, one version above the newest, stored durably before it is returned."""
        ...


def key_file_name(version: int) -> str:
    """The file name of ``version`` in a :class:`FileKeyStore` folder."""
    return f"kek-v{version:04d}.key"


class FileKeyStore:
    """Key-encryption keys as owner-only files in one owner-only folder.

    Build it with :func:`open_key_store`, which checks the folder and every key. Each
    call of :meth:`versions`, :meth:`current` and :meth:`add_version` lists the folder
    again (so a version added by another process, such as ``telecircle keys rotate``
    while the server runs, is seen) and refuses it if it has become accessible to group
    or others. A key, once read, is kept in memory: its file never changes. Safe to use
    from several threads and processes at once.
    """

    __slots__ = ("_folder", "_loaded")

    def __init__(self, folder: Path) -> None:
        """A store over ``folder``; does no I/O (see :func:`open_key_store`)."""
        self._folder = folder
        self._loaded: dict[int, KeyEncryptionKey] = {}

    def __repr__(self) -> str:
        return f"FileKeyStore({str(self._folder)!r})"

    @property
    def folder(self) -> Path:
        return self._folder

    def path_of(self, version: int) -> Path:
        """Where ``version``'s file is (whether or not it exists)."""
        return self._folder / key_file_name(version)

    def versions(self) -> tuple[int, ...]:
        """Every version with a file in the folder, ascending.

        Raises :class:`KeyStoreError` if the folder is missing, is a symbolic link or
        not a folder, or can be used by group or others. A version's file is only listed
        here; :meth:`get` checks it.
        """
        found = []
        for name in _list_owner_only_folder(self._folder):
            match = _KEY_FILE_NAME.fullmatch(name)
            if match is None:
                continue
            version = int(match["version"])
            if version >= 1 and name == key_file_name(version):
                found.append(version)
        return tuple(sorted(found))

    def get(self, version: int) -> KeyEncryptionKey:
        """The KEK of ``version``.

        Raises :class:`KeyVersionMissing` if it has no file, :class:`KeyStoreError` if
        the file is a symbolic link, not a regular file, readable or writable by group
        or others, or not exactly 64 hex digits, and ValueError if ``version`` < 1.
        """
        if version < 1:
            raise ValueError("key versions start at 1")
        kek = self._loaded.get(version)
        if kek is None:
            kek = KeyEncryptionKey(version, self._read(version))
            self._loaded[version] = kek
        return kek

    def current(self) -> KeyEncryptionKey:
        """The newest KEK. Raises :class:`KeyStoreError` if there is none."""
        versions = self.versions()
        if not versions:
            raise _no_versions(self._folder)
        return self.get(versions[-1])

    def add_version(self) -> KeyEncryptionKey:
        """A new random KEK one version above the newest, durable before it returns.

        The file is created atomically and never replaces another. When several callers
        (threads or processes) add a version at once, each one gets a version of its
        own: a caller that finds its number taken retries with the next free one. So
        every call returns a KEK it created, newer than every version it had seen.
        """
        while True:
            versions = self.versions()
            version = versions[-1] + 1 if versions else 1
            if version > MAX_VERSION:
                raise KeyStoreError(f"The key folder {self._folder} has no version number left.")
            secret = secrets.token_bytes(KEY_BYTES)
            if create_secret_file(self.path_of(version), secret):
                kek = KeyEncryptionKey(version, secret)
                self._loaded[version] = kek
                return kek

    def _read(self, version: int) -> bytes:
        path = self.path_of(version)
        try:
            return read_secret_file(
                path,
                label=_KEY_FILE_LABEL,
                error=KeyStoreError,
                not_regular_fix="Move it aside and restore the file from your key backup.",
            )
        except FileNotFoundError:
            raise KeyVersionMissing(version, path) from None


def open_key_store(path: Path, *, create: bool) -> FileKeyStore:
    """The key store in folder ``path``, every key in it checked.

    With ``create`` (server start), a missing folder is made with mode 0700 and, if it
    holds no version, version 1 is made; concurrent first starts agree on that one
    version. Without ``create`` (``telecircle keys verify``), a missing folder or one
    with no version is an error. Either way, raises :class:`KeyStoreError` if the folder
    or any version file is unsafe or malformed.

    Pass ``create=True`` only where an empty store is expected: creating version 1 in a
    folder whose keys were lost would not bring back what they wrapped.
    """
    store = FileKeyStore(path)
    if create:
        _make_folder(path)
        if not store.versions():
            create_secret_file(store.path_of(1), secrets.token_bytes(KEY_BYTES))
    versions = store.versions()
    if not versions:
        raise _no_versions(path)
    for version in versions:
        store.get(version)
    return store


def _make_folder(folder: Path) -> None:
    try:
        folder.mkdir(mode=0o700)
    except FileExistsError:
        return  # checked (symbolic link, mode) when it is listed
    except FileNotFoundError:
        folder.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        try:
            folder.mkdir(mode=0o700)
        except FileExistsError:
            return
    fsync_folder(folder.parent)


def _list_owner_only_folder(folder: Path) -> list[str]:
    try:
        fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError:
        raise KeyStoreError(
            f"The key folder {folder} does not exist. Restore it from your key backup, or "
            "set TELECIRCLE_KEY_DIR to the folder that holds the keys (the server makes "
            "the folder only when it starts for the first time).",
            code="key_store_missing",
        ) from None
    except OSError as exc:
        # With O_DIRECTORY, Linux reports a symbolic link as ENOTDIR rather than ELOOP.
        if exc.errno == errno.ELOOP or (exc.errno == errno.ENOTDIR and folder.is_symlink()):
            raise KeyStoreError(
                f"The key folder {folder} is a symbolic link. Set TELECIRCLE_KEY_DIR to the "
                "folder it points to (which must be owner-only: chmod 700)."
            ) from None
        if exc.errno == errno.ENOTDIR:
            raise KeyStoreError(
                f"The key folder {folder} is not a folder. Move it aside and restore the "
                "folder from your key backup."
            ) from None
        raise KeyStoreError(
            f"The key folder {folder} cannot be read ({exc.strerror}). "
            "Check its owner and permissions."
        ) from None
    try:
        info = os.fstat(fd)
        mode = info.st_mode
        if mode & 0o077:
            raise KeyStoreError(
                f"The key folder {folder} can be used by other users "
                f"(mode {stat.S_IMODE(mode):04o}). Restrict it with: chmod 700 {folder}"
            )
        if info.st_uid != os.geteuid():
            raise KeyStoreError(
                f"The key folder {folder} belongs to another user (uid {info.st_uid}). Give "
                f"it to the account the server runs as: chown -R {os.geteuid()} {folder}"
            )
        return os.listdir(fd)
    finally:
        os.close(fd)


def _no_versions(folder: Path) -> KeyStoreError:
    return KeyStoreError(
        f"The key folder {folder} holds no key-encryption key (files named kek-v0001.key "
        "and up). Restore its files from your key backup.",
        code="key_store_empty",
    )


if TYPE_CHECKING:
    _FILE_KEY_STORE_IS_A_KEY_STORE: KeyStore = FileKeyStore(Path())
