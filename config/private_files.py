"""The data dir (settings.DATA_DIR) holds the server's secrets: the generated secret key,
the first login's password, the SQLite database. Only the server's own user may read
them, whatever the umask: the dir is 0700, those files 0600, from their creation on."""

from __future__ import annotations

import os
from pathlib import Path

DIR_MODE = 0o700
FILE_MODE = 0o600


def private_dir(path: Path) -> Path:
    path.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
    path.chmod(DIR_MODE)  # one made before this rule keeps its old mode otherwise
    return path


def write_private(path: Path, text: str) -> None:
    """Write `text` to a file that is never readable by others, not even for a moment."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, FILE_MODE)
    with os.fdopen(fd, "w") as file:
        file.write(text)
    path.chmod(FILE_MODE)


def private_sqlite(path: Path) -> None:
    """Create the database file 0600 before SQLite opens it: SQLite gives its -wal and
    -shm files the database's mode. Files made before this rule are tightened."""
    if not path.exists():
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT, FILE_MODE))
    for file in (path, Path(f"{path}-wal"), Path(f"{path}-shm")):
        if file.exists():
            file.chmod(FILE_MODE)
