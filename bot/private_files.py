"""Files the bot keeps to itself: DATA_DIR is 0700, the database and the secret files 0600.

Two layers. The `bot` command narrows the process umask (`restrict_umask`), so everything it
creates (index files, SQLite's -wal and -shm, temporary files) is private without each writer
having to ask. The paths that matter most (DATA_DIR, the database, secret.key) are also made
private explicitly, so they are right when the core runs inside another process (tests, an
embedding application) with a looser umask, and on installs made by versions before this one.
"""

from __future__ import annotations

import contextlib
import logging
import os
import stat
import tempfile
from pathlib import Path

log = logging.getLogger(__name__)

PRIVATE_DIR_MODE = 0o700
PRIVATE_FILE_MODE = 0o600
PRIVATE_UMASK = 0o077  # no group or other bits on anything the process creates
SQLITE_SIDE_FILES = ("-wal", "-shm", "-journal")


def restrict_umask() -> None:
    """Take group and other bits off everything this process creates from now on.

    Only narrows: an operator's stricter umask (say 0o277) is kept.
    """
    current = os.umask(PRIVATE_UMASK)
    os.umask(current | PRIVATE_UMASK)


def private_dir(path: Path) -> Path:
    """`path` as a directory only its owner can enter: created 0700, or tightened to 0700."""
    path.mkdir(mode=PRIVATE_DIR_MODE, parents=True, exist_ok=True)
    _tighten(path, PRIVATE_DIR_MODE)
    return path


def private_database(path: Path) -> None:
    """Make the SQLite database at `path` and its side files 0600 before SQLite opens it.

    SQLite creates -wal, -shm and -journal with the mode of the database file, so a database
    file created here 0600 keeps them private too; an existing one (an older install) and any
    side files left from its last run are tightened.
    """
    private_dir(path.parent)
    # An empty file is a valid empty database to SQLite; O_CREAT without O_EXCL keeps one that
    # exists, and the mode argument is used only when this call creates it.
    os.close(os.open(path, os.O_RDWR | os.O_CREAT, PRIVATE_FILE_MODE))
    _tighten(path, PRIVATE_FILE_MODE)
    for suffix in SQLITE_SIDE_FILES:
        side = path.with_name(path.name + suffix)
        with contextlib.suppress(FileNotFoundError):
            _tighten(side, PRIVATE_FILE_MODE)


def create_private(path: Path, data: bytes) -> bool:
    """Create `path` holding `data` (0600) unless it exists; True if this call created it.

    The data is written and flushed to disk under a temporary name first and then hard-linked
    to `path`, which fails if `path` exists: whoever starts at the same moment, or after a crash,
    finds either no file or the whole file, never an empty or half-written one, and two
    processes racing end up using the same file.
    """
    temporary = _write_temporary(path, data)
    try:
        os.link(temporary, path)
    except FileExistsError:
        return False
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
    _fsync_dir(path.parent)
    return True


def replace_private(path: Path, data: bytes) -> None:
    """Replace `path` with `data` (0600) in one step: a crash leaves the old file or the new."""
    temporary = _write_temporary(path, data)
    try:
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise
    _fsync_dir(path.parent)


def remove_file(path: Path) -> None:
    """Remove `path` if it is there, durably."""
    try:
        path.unlink()
    except FileNotFoundError:
        return
    _fsync_dir(path.parent)


def _write_temporary(path: Path, data: bytes) -> str:
    # mkstemp creates the file 0600 whatever the umask; a dot-name marks it as work in progress.
    descriptor, temporary = tempfile.mkstemp(
        dir=path.parent, prefix=f".{path.name}.", suffix=".tmp"
    )
    try:
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise
    return temporary


def _fsync_dir(directory: Path) -> None:
    # A new or renamed directory entry survives a power cut only once the directory is synced.
    descriptor = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def _tighten(path: Path, mode: int) -> None:
    current = stat.S_IMODE(path.stat().st_mode)
    if not current & ~mode:
        return  # already this private, or more
    try:
        os.chmod(path, mode)
    except PermissionError:
        # Someone else's directory (a mounted volume): the bot still works, the operator is told.
        log.warning("%s is mode %o and can't be narrowed to %o", path, current, mode)
        return
    log.info("%s was mode %o; narrowed to %o", path, current, mode)
