"""Outputs appear whole or not at all: each is written under a temporary name next to its target and
renamed into place, and removed when the command fails, is interrupted (Ctrl-C) or terminated (SIGTERM)."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import tempfile
import threading
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any


class Terminated(BaseException):
    """SIGTERM arrived: unwinds like KeyboardInterrupt, so every temporary output is removed on the way."""


@contextlib.contextmanager
def sigterm_unwinds() -> Iterator[None]:
    """Inside: SIGTERM raises Terminated in the main thread (by default it ends the process where it
    stands, leaving a partial file behind). The previous handler is restored on exit."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def terminate(signum: int, frame: Any) -> None:
        raise Terminated

    previous = signal.signal(signal.SIGTERM, terminate)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextlib.contextmanager
def atomic(path: Path) -> Iterator[Path]:
    """A temporary path next to ``path`` (same suffix): renamed onto ``path`` on success, removed otherwise."""
    tmp_path = path.parent / f".{path.name}.{uuid.uuid4().hex[:8]}.tmp{path.suffix}"
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    finally:
        tmp_path.unlink(missing_ok=True)


def write_bytes(path: Path, data: bytes) -> None:
    with atomic(path) as tmp:
        tmp.write_bytes(data)


def write_json(path: Path, data: dict[str, Any]) -> None:
    with atomic(path) as tmp:
        tmp.write_text(json.dumps(data, indent=1) + "\n")


def fill_dir(target: Path, write: Callable[[Path], None]) -> list[Path]:
    """``write(folder)`` fills a staging folder next to ``target``; then its files move into ``target``
    (created if missing; a file of the same name there is replaced, other files are kept). A failure, an
    interrupt or SIGTERM in ``write`` removes the staging folder and leaves ``target`` as it was.
    Returns the files moved into ``target``."""
    stage = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        write(stage)
        target.mkdir(exist_ok=True)
        moved = []
        for f in sorted(stage.iterdir()):
            os.replace(f, target / f.name)
            moved.append(target / f.name)
        return moved
    finally:
        shutil.rmtree(stage, ignore_errors=True)


def replace_dir(target: Path, write: Callable[[Path], None]) -> None:
    """``write(folder)`` fills a staging folder next to ``target``, which then replaces ``target`` (an
    existing one is moved aside first and removed after)."""
    parent = target.parent
    stage = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=parent))
    try:
        write(stage)
        old = None
        if target.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{target.name}.old.", dir=parent))
            os.replace(target, old / target.name)
        os.replace(stage, target)
        if old is not None:
            shutil.rmtree(old)
    finally:
        shutil.rmtree(stage, ignore_errors=True)
