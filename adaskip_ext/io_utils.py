"""Atomic file and folder writes, and the error types the CLIs print on one line."""
from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterator


class UserFacingError(ValueError):
    """An error caused by the user's input (a file, a flag, a setting); the CLIs print it on one
    line. A ``ValueError``, so library callers catch it as one."""


class MissingFileError(UserFacingError, FileNotFoundError):
    """An input file or folder that does not exist."""


class InvalidSetting(UserFacingError):
    """A bad value of a named setting (a configuration field); a CLI names the matching flag."""

    def __init__(self, name: str, problem: str) -> None:
        super().__init__(f"{name} {problem}")
        self.name, self.problem = name, problem

    def as_flag(self) -> UserFacingError:
        """The same problem, reported against the command-line flag of the setting."""
        return UserFacingError(f"--{self.name.replace('_', '-')} {self.problem}")


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success fsync it and rename it over ``path``.

    A crash or an exception leaves any earlier ``path`` untouched and removes the temporary.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the file normal permissions
        os.replace(tmp, path)
        directory = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)
    finally:
        if tmp.exists():
            tmp.unlink()


@contextlib.contextmanager
def atomic_directory(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield an empty folder beside ``path``; on success it takes ``path``'s place.

    Whatever was at ``path`` is moved aside first and deleted last; a failure leaves it there.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    old: Path | None = None
    try:
        yield tmp
        for file in tmp.iterdir():
            with open(file, "rb+") as handle:
                os.fsync(handle.fileno())
        os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp makes 0700
        if path.exists() or path.is_symlink():
            old = tmp.with_name(tmp.name + ".old")
            os.replace(path, old)
        try:
            os.replace(tmp, path)
        except OSError:
            if old is not None:
                os.replace(old, path)
                old = None
            raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
        if old is not None:
            if old.is_dir() and not old.is_symlink():
                shutil.rmtree(old)
            else:
                old.unlink()


def nearest_existing(path: Path) -> Path:
    """``path`` itself if it exists, else its closest ancestor that does."""
    path = Path(os.path.abspath(path))
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def _unwritable_because(folder: Path) -> str | None:
    """Why ``folder`` could not be created (if missing) and written in, or None if it could.
    Creates nothing: it probes ``folder`` or its nearest existing ancestor."""
    folder = Path(os.path.abspath(folder))
    existing = nearest_existing(folder)
    if not existing.is_dir():
        return "is not a folder" if existing == folder else f"{existing} is not a folder"
    try:
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError as error:
        return str(error.strerror or error)
    return None


def check_writable(folder: Path, flag: str = "--out") -> None:
    """Raise a one-line error naming ``flag`` unless ``folder`` could be created (if missing) and
    written in. Creates nothing, so an unwritable location fails before any heavy work and a
    later error leaves no folder behind: the folder appears with the first result written."""
    reason = _unwritable_because(folder)
    if reason is not None:
        raise UserFacingError(f"{flag} {folder}: cannot write there ({reason})")


def check_new_output(path: Path, flag: str, overwrite: bool) -> None:
    """Refuse to replace ``path`` without --overwrite, and fail early where it cannot be written
    (one-line errors naming ``flag`` and ``path``); creates nothing."""
    if (path.exists() or path.is_symlink()) and not overwrite:
        raise UserFacingError(f"{flag} {path}: already exists; pass --overwrite to replace it")
    reason = _unwritable_because(path.parent)
    if reason is not None:
        raise UserFacingError(f"{flag} {path}: cannot write there ({reason})")
