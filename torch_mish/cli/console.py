"""What the command prints and what it keeps quiet: messages, progress bars, and the libraries' own
chatter (logs, warnings, C++ prints), which --verbose lets through."""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

T = TypeVar("T")
LIBRARY_LOGGERS = ("torch", "torch_tensorrt", "onnxscript", "torch_mish")


@dataclass(frozen=True)
class Console:
    quiet: bool = False
    verbose: bool = False
    json: bool = False

    def info(self, message: str) -> None:
        """Human-readable output: stdout, or stderr when stdout carries JSON."""
        if not self.quiet:
            print(message, file=sys.stderr if self.json else sys.stdout, flush=True)

    def progress(self, items: Iterable[T], desc: str) -> Iterable[T]:
        """A tqdm bar over ``items`` on stderr, none under --quiet."""
        from tqdm import tqdm

        return tqdm(items, desc=desc, disable=True if self.quiet else None, file=sys.stderr, leave=False)

    @contextlib.contextmanager
    def steps(self, names: Sequence[str]) -> Iterator[Callable[[], None]]:
        """A tqdm bar over named steps; call the yielded function as each one finishes."""
        from tqdm import tqdm

        bar = tqdm(
            total=len(names),
            desc=names[0],
            disable=True if self.quiet else None,
            file=sys.stderr,
            leave=False,
            unit="step",
        )
        done = [0]

        def advance() -> None:
            done[0] += 1
            bar.update(1)
            if done[0] < len(names):
                bar.set_description(names[done[0]])

        try:
            yield advance
        finally:
            bar.close()

    @contextlib.contextmanager
    def muted(self) -> Iterator[None]:
        """Silence the chatter libraries print to stdout (torch.onnx's progress lines), unless --verbose."""
        if self.verbose:
            yield
            return
        with open(os.devnull, "w") as null, contextlib.redirect_stdout(null):
            yield

    @contextlib.contextmanager
    def muted_fds(self, skip: bool = False) -> Iterator[None]:
        """Mute file descriptors 1 and 2 (what C++ code prints), unless --verbose or ``skip``."""
        if self.verbose or skip:
            yield
            return
        sys.stdout.flush()
        sys.stderr.flush()
        saved = [os.dup(1), os.dup(2)]
        null = os.open(os.devnull, os.O_WRONLY)
        try:
            os.dup2(null, 1)
            os.dup2(null, 2)
            yield
        finally:
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            for fd in (*saved, null):
                os.close(fd)


@contextlib.contextmanager
def quiet_libraries(verbose: bool) -> Iterator[None]:
    """Library logs and warnings off unless --verbose; restored on exit (main() may run in-process).
    Their error logs too: a failure is reported as one line by main(), with the details on --verbose."""
    level = logging.INFO if verbose else logging.CRITICAL
    loggers = [logging.getLogger(name) for name in LIBRARY_LOGGERS]
    saved = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(level)
    try:
        with warnings.catch_warnings():
            if not verbose:
                warnings.simplefilter("ignore")
            yield
    finally:
        for logger, old in zip(loggers, saved, strict=True):
            logger.setLevel(old)


def first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def import_tensorrt(console: Console) -> tuple[Any, Any]:
    """(torch_mish.tensorrt, tensorrt): the first registers the converters and the plugin library and
    aliases tensorrt_rtx to tensorrt where torch-tensorrt-rtx is installed. What their C++ prints at
    import is muted unless --verbose."""
    try:
        with console.muted_fds(skip="torch_mish.tensorrt" in sys.modules):
            import torch_mish.tensorrt as mt
    except ImportError as exc:
        raise RuntimeError(first_line(exc)) from None
    import tensorrt as trt

    return mt, trt
