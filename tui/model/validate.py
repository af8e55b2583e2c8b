"""Typed field readers that turn a parsed TOML table into clear, located errors.

Every error names the file, the dotted key and what is wrong, because an admin
fixing a node that refused to start has nothing else to go on.
"""

from __future__ import annotations

import re
from typing import Any

NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")


class ConfigError(ValueError):
    def __init__(self, file: str, key: str, problem: str):
        self.file = file
        self.key = key
        self.problem = problem
        where = f"{file}: {key}: " if key else f"{file}: "
        super().__init__(where + problem)


class Table:
    """One TOML table being read; remembers which keys were consumed to reject unknown ones."""

    def __init__(self, data: Any, file: str, path: str = ""):
        if not isinstance(data, dict):
            raise ConfigError(file, path, f"must be a table, not {_kind(data)}")
        self.data = data
        self.file = file
        self.path = path
        self._seen: set[str] = set()

    def key(self, name: str) -> str:
        return f"{self.path}.{name}" if self.path else name

    def error(self, name: str, problem: str) -> ConfigError:
        return ConfigError(self.file, self.key(name), problem)

    def _get(self, name: str, default: Any, required: bool) -> Any:
        self._seen.add(name)
        if name not in self.data:
            if required:
                raise self.error(name, "is missing")
            return default
        return self.data[name]

    def str(self, name: str, default: str = "", *, required: bool = False,
            pattern: re.Pattern[str] | None = None, choices: tuple[str, ...] = ()) -> str:
        value = self._get(name, default, required)
        if not isinstance(value, str):
            raise self.error(name, f"must be a string, not {_kind(value)}")
        if choices and value not in choices:
            raise self.error(name, f"must be one of {', '.join(choices)}, not {value!r}")
        if pattern is not None and not pattern.match(value):
            raise self.error(name, f"{value!r} is not a valid name (letters, digits, '.', '_', '-'; "
                                   "at most 63 characters)")
        return value

    def int(self, name: str, default: int = 0, *, required: bool = False,
            minimum: int | None = None, maximum: int | None = None) -> int:
        value = self._get(name, default, required)
        if type(value) is not int:  # bool is an int subclass; true is not a number here
            raise self.error(name, f"must be an integer, not {_kind(value)}")
        if minimum is not None and value < minimum or maximum is not None and value > maximum:
            raise self.error(name, f"must be between {minimum} and {maximum}, not {value}")
        return value

    def bool(self, name: str, default: bool = False, *, required: bool = False) -> bool:
        value = self._get(name, default, required)
        if not isinstance(value, bool):
            raise self.error(name, f"must be true or false, not {_kind(value)}")
        return value

    def str_list(self, name: str) -> tuple[str, ...]:
        value = self._get(name, [], False)
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise self.error(name, "must be a list of strings")
        return tuple(value)

    def table(self, name: str) -> "Table":
        return Table(self._get(name, {}, False), self.file, self.key(name))

    def tables(self, name: str) -> list["Table"]:
        value = self._get(name, [], False)
        if not isinstance(value, list):
            raise self.error(name, f"must be an array of tables, not {_kind(value)}")
        return [Table(item, self.file, f"{self.key(name)}[{i}]") for i, item in enumerate(value)]

    def done(self) -> None:
        unknown = sorted(set(self.data) - self._seen)
        if unknown:
            raise self.error(unknown[0], "unknown key (a typo?)")


def _kind(value: Any) -> str:
    return {
        bool: "a boolean", int: "an integer", float: "a number", str: "a string",
        list: "an array", dict: "a table",
    }.get(type(value), type(value).__name__)
