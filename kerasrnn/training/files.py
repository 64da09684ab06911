"""Files that are either absent, old or complete: never half-written."""

import os
import tempfile


def atomic_write_text(path, text):
    """Writes ``text`` (UTF-8) to ``path`` through a temporary file in the
    same directory, flushed to disk and renamed over ``path``: a reader
    (or a process restarted after a kill) sees the old file or the new
    one, never a part."""
    directory = os.path.dirname(os.path.abspath(path))
    descriptor, temporary = tempfile.mkstemp(
        dir=directory, prefix=".tmp-", suffix=os.path.basename(path)
    )
    try:
        os.chmod(temporary, 0o666 & ~_umask())      # as open() would
        with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        if os.path.exists(temporary):
            os.remove(temporary)
        raise


def _umask():
    mask = os.umask(0o022)
    os.umask(mask)
    return mask
