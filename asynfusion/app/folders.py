"""Each request's own folder under Settings.work_dir, and tidying up after requests.

A folder older than Settings.keep_seconds is removed when a later request starts (the page has fetched its
files by then), and a failed request's folder at once. Live takes keep theirs here too (live_takes.py).
"""

import contextlib
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from ..settings import Settings


def remove_old_requests(settings: Settings) -> int:
    """Delete request folders older than keep_seconds; how many went."""
    cutoff = time.time() - settings.keep_seconds
    removed = 0
    for folder in settings.work_dir.glob("request-*"):
        with contextlib.suppress(FileNotFoundError):
            if folder.stat().st_mtime < cutoff:
                shutil.rmtree(folder, ignore_errors=True)
                removed += 1
    return removed


@contextlib.contextmanager
def request_folder(settings: Settings) -> Iterator[Path]:
    """A fresh folder for one request's files: kept on success (the UI fetches them), removed on failure."""
    settings.work_dir.mkdir(parents=True, exist_ok=True)
    remove_old_requests(settings)
    folder = Path(tempfile.mkdtemp(prefix="request-", dir=settings.work_dir))
    try:
        yield folder
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    finally:
        release_memory()


def release_memory() -> None:
    """Hand the request's freed memory back to the OS. A request allocates a few hundred MB of
    short-lived arrays (audio, features, vertices, frames); glibc keeps freed blocks in its arenas,
    so without this a long-running app's resident size creeps up by 100-250 MB after a busy moment."""
    import ctypes
    import gc

    gc.collect()
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)  # glibc only; elsewhere nothing to do
