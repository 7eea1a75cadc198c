"""Atomic file writes: each output is written beside its destination and renamed onto it only when complete, so a
killed or failed job never leaves a half-written file in place of a good one; and the reader of the tagged torch
files written so."""
from __future__ import annotations

import errno
import os
import shutil
import tempfile
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from esgd_asr.errors import EsgdError

_UMASK = os.umask(0)
os.umask(_UMASK)


def replace_dir(src: Path, dst: Path) -> None:
    """Move a finished directory into place, replacing `dst` only once `src` is complete."""
    old = dst.parent / f".{dst.name}.old"
    shutil.rmtree(old, ignore_errors=True)
    if dst.exists():
        os.replace(dst, old)
    os.replace(src, dst)
    shutil.rmtree(old, ignore_errors=True)


@contextmanager
def atomic_outputs() -> Iterator[Callable[..., Path]]:
    """Outputs replaced together: `stage(path, suffix="", directory=False)` gives a temporary file (or empty
    directory) beside `path`, ending in `suffix` for writers that insist on one (np.savez's .npz). When the block
    succeeds, each is moved onto its destination, one right after another; when it raises, all are removed and
    every destination is left as it was. Parent directories are created."""
    staged: list[tuple[Path, Path]] = []

    def stage(path: str | Path, suffix: str = "", directory: bool = False) -> Path:
        path = Path(path)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            if directory:
                tmp = tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.", suffix=suffix)
            else:
                fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=suffix)
                os.close(fd)
        except OSError as err:  # name the output, not the temporary file
            raise OSError(err.errno, err.strerror, str(path)) from None
        os.chmod(tmp, (0o777 if directory else 0o666) & ~_UMASK)  # mkstemp's 0600 would make outputs private
        staged.append((Path(tmp), path))
        return Path(tmp)

    try:
        yield stage
    except BaseException as err:
        for tmp, _ in staged:
            if tmp.is_dir():
                shutil.rmtree(tmp, ignore_errors=True)
            else:
                tmp.unlink(missing_ok=True)
        if isinstance(err, OSError) and staged and (err.filename is None or str(err.filename).startswith(
                str(staged[-1][0]))):  # a failed write names no file, or the temporary one: name the output
            raise OSError(err.errno, err.strerror, str(staged[-1][1])) from None
        raise
    for tmp, path in staged:
        if tmp.is_dir():
            replace_dir(tmp, path)
        else:
            os.replace(tmp, path)


@contextmanager
def atomic_path(path: str | Path, suffix: str = "") -> Iterator[Path]:
    """A temporary path beside `path` (ending in `suffix`), renamed onto `path` when the block succeeds and
    removed when it raises."""
    with atomic_outputs() as stage:
        yield stage(path, suffix)


def atomic_write_text(path: str | Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


class _WriteAll:
    """A file for torch.save that writes every byte or raises the OSError, which torch.save itself reports only as
    an 'unexpected pos' enforce failure."""

    def __init__(self, file):
        self.file, self.error = file, None

    def write(self, data) -> int:
        view = memoryview(data).cast("B")
        try:
            while view:
                view = view[self.file.write(view):]
        except OSError as err:
            self.error = err
            raise
        return len(data)

    def flush(self) -> None:
        self.file.flush()


def write_fst(fst, path: str | Path) -> None:
    """`fst.write(path)` of kaldifst, which only returns False where it could not write: then the one-line error
    `cannot write PATH: reason`, the reason probed (directory not writable, no space left) where it can be."""
    if fst.write(str(path)):
        return
    parent = Path(path).parent
    if not os.access(parent, os.W_OK):
        reason = os.strerror(errno.EACCES)
    elif shutil.disk_usage(parent).free == 0:
        reason = os.strerror(errno.ENOSPC)
    else:
        reason = "kaldifst could not write the FST"
    raise EsgdError(f"cannot write {path}: {reason}")


def atomic_torch_save(obj, path: str | Path) -> Path:
    """torch.save to `path` atomically; returns `path`. A failed write (no space, ...) raises its OSError."""
    import torch  # here, so that the text and byte writers do not pull torch in

    with atomic_path(path) as tmp, open(tmp, "wb") as file:
        writer = _WriteAll(file)
        try:
            torch.save(obj, writer)
        except RuntimeError:
            if writer.error is None:
                raise
            raise writer.error from None
    return Path(path)


def load_tagged(path: str | Path, file_format: str, what: str) -> dict:
    """The dict of a torch file saved with {"format": file_format, ...}, without the tag; a missing, corrupt or
    other file raises a one-line EsgdError naming `path` (`what` names the kind of file in the message)."""
    import torch
    from esgd_asr.errors import EsgdError

    try:
        saved = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise EsgdError(f"{path}: no such file") from None
    except Exception as err:  # a corrupt file surfaces as many different exception types
        raise EsgdError(f"{path}: unreadable {what} ({err.__class__.__name__})") from None
    if not isinstance(saved, dict) or saved.pop("format", None) != file_format:
        raise EsgdError(f"{path}: not a {file_format} file")
    return saved
