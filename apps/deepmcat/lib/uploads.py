"""Uploaded files: written by MONAI Label's endpoints into a private temporary folder, deleted when their
request ends, answered or refused (MONAI Label's own clean-up runs only after a successful answer)."""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile


def use_private_tempdir() -> str:
    """Make this process's temporary files private: a 0700 folder of its own, files 0600 (umask 077)."""
    os.umask(0o077)
    path = tempfile.mkdtemp(prefix="deepmcat-server-")
    tempfile.tempdir = path
    os.environ["TMPDIR"] = path  # task subprocesses too
    atexit.register(shutil.rmtree, path, True)
    return path


def is_upload(path: str) -> bool:
    """A file an endpoint wrote an upload to (``tempfile.NamedTemporaryFile`` names in the temp folder)."""
    return (os.path.isfile(path) and os.path.dirname(os.path.abspath(path)) == tempfile.gettempdir()
            and os.path.basename(path).startswith("tmp"))


def discard(path: object) -> None:
    """Delete ``path`` when it is an upload (anything else is left alone)."""
    if isinstance(path, str) and is_upload(path):
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
