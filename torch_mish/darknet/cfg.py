"""Reading darknet ``.cfg`` files the way darknet's ``read_cfg`` does, with errors that name the file,
the line and the section.

Darknet removes every space, tab and carriage return from a line, skips empty lines and lines that
start with ``#`` or ``;``, opens a section at ``[type]`` and reads ``key=value`` otherwise. Numbers are
read with C's ``atoi``/``atof`` (a trailing ``# comment`` is ignored); the first of two equal keys wins.
"""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path

_INT = re.compile(r"[+-]?\d+")
_FLOAT = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")
_WHITESPACE = str.maketrans("", "", " \t\r\n\v\f")


class CfgError(ValueError):
    """A cfg the importer cannot build: the message starts with ``file:line: [section]``."""


@dataclass
class Option:
    value: str
    line: int
    used: bool = False


@dataclass
class Section:
    """One ``[type]`` block: its options in file order, the line of its header, its cfg file name."""

    type: str
    line: int
    source: str
    options: dict[str, Option] = field(default_factory=dict)

    def where(self, key: str | None = None) -> str:
        line = self.options[key].line if key is not None and key in self.options else self.line
        return f"{self.source}:{line}: [{self.type}]"

    def error(self, message: str, key: str | None = None) -> CfgError:
        return CfgError(f"{self.where(key)}: {message}")

    def has(self, key: str) -> bool:
        return key in self.options

    def raw(self, key: str) -> str | None:
        opt = self.options.get(key)
        if opt is None:
            return None
        opt.used = True
        return opt.value

    def get_int(self, key: str, default: int) -> int:
        value = self.raw(key)
        return default if value is None else self._number(key, value, _INT, int)

    def get_float(self, key: str, default: float) -> float:
        value = self.raw(key)
        return default if value is None else self._number(key, value, _FLOAT, float)

    def get_str(self, key: str, default: str) -> str:
        value = self.raw(key)
        return default if value is None else value

    def get_ints(self, key: str) -> list[int] | None:
        value = self.raw(key)
        return None if value is None else [self._number(key, v, _INT, int) for v in self._items(key, value)]

    def get_floats(self, key: str) -> list[float] | None:
        value = self.raw(key)
        return None if value is None else [self._number(key, v, _FLOAT, float) for v in self._items(key, value)]

    def _items(self, key: str, value: str) -> list[str]:
        items = value.split("#", 1)[0].split(",")
        if any(not item for item in items):
            raise self.error(f"{key}={value}: empty entry in the list", key)
        return items

    def _number(self, key: str, value: str, pattern: re.Pattern[str], kind: type) -> object:
        # atoi/atof read a leading number; darknet then ignores the rest, which is only sane for a comment.
        match = pattern.match(value)
        if match is None or (match.end() < len(value) and value[match.end()] != "#"):
            name = "an integer" if kind is int else "a number"
            raise self.error(f"{key}={value}: expected {name}", key)
        return kind(match.group(0))

    def unused(self) -> list[str]:
        return [key for key, opt in self.options.items() if not opt.used]


def read_cfg(cfg: str | Path) -> list[Section]:
    """Sections of a cfg given as a path or as the cfg text itself (text is anything containing a
    newline or a ``[``)."""
    if isinstance(cfg, Path) or ("\n" not in cfg and "[" not in cfg):
        path = Path(cfg)
        try:
            text = path.read_text(encoding="utf-8-sig")  # a byte-order mark is not part of "[net]"
        except OSError as exc:
            from torch_mish.darknet import PACKAGED_CFGS  # noqa: PLC0415 - the package imports this module

            name = path.name if path.name.endswith(".cfg") else f"{path.name}.cfg"
            hint = (
                f"; the packaged one is packaged_cfg({name!r})" if not path.exists() and name in PACKAGED_CFGS else ""
            )
            raise CfgError(f"{path}: cannot read the cfg file: {exc.strerror or exc}{hint}") from exc
        source = path.name
    else:
        text, source = cfg, "<cfg text>"
    return parse_cfg(text, source)


def parse_cfg(text: str, source: str = "<cfg text>") -> list[Section]:
    sections: list[Section] = []
    for number, raw_line in enumerate(text.splitlines(), start=1):
        line = raw_line.translate(_WHITESPACE)
        if not line or line[0] in "#;":
            continue
        if line[0] == "[":
            if not line.endswith("]") or len(line) < 3:
                raise CfgError(f"{source}:{number}: malformed section header {line!r}")
            sections.append(Section(line[1:-1], number, source))
            continue
        if not sections:
            raise CfgError(f"{source}:{number}: option {line!r} before the first [section]")
        section = sections[-1]
        key, eq, value = line.partition("=")
        if not eq or not key:
            raise CfgError(f"{section.source}:{number}: [{section.type}]: expected key=value, got {line!r}")
        if key in section.options:
            # darknet's option_find returns the first occurrence
            warnings.warn(
                f"{section.source}:{number}: [{section.type}]: {key} repeated; darknet uses the first "
                f"(line {section.options[key].line})",
                stacklevel=3,
            )
            continue
        section.options[key] = Option(value, number)
    if not sections:
        raise CfgError(f"{source}: no sections")
    return sections
