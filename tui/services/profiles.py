"""Saved connection profiles of the console: name, host, port, user. Never a password.

Kept in ``profiles.toml`` under the platformdirs config folder (``MFT_PROFILES`` names
another file), written atomically.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import asdict, dataclass
from pathlib import Path

import platformdirs
import tomli_w

from ..atomic import atomic_write
from ..model.config import ADMIN_PORT


@dataclass(frozen=True)
class Profile:
    name: str
    host: str
    port: int = ADMIN_PORT
    user: str = "admin"


class ProfileError(Exception):
    """The profiles file cannot be read; it names the file and the problem."""


def default_path() -> Path:
    if os.environ.get("MFT_PROFILES"):
        return Path(os.environ["MFT_PROFILES"])
    return Path(platformdirs.user_config_dir("mft", appauthor=False)) / "profiles.toml"


def load(path: Path | None = None) -> list[Profile]:
    path = path or default_path()
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return []
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ProfileError(f"{path}: cannot read the saved profiles: {exc}") from None
    profiles = []
    for i, item in enumerate(data.get("profiles", [])):
        try:
            port = int(item.get("port", ADMIN_PORT))
            profile = Profile(str(item["name"]), str(item["host"]), port,
                              str(item.get("user", "admin")))
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise ProfileError(f"{path}: profiles[{i}]: {exc!r} is missing or wrong") from None
        if not 1 <= profile.port <= 65535:
            raise ProfileError(f"{path}: profiles[{i}].port must be 1 to 65535")
        profiles.append(profile)
    return profiles


def save(profile: Profile, path: Path | None = None) -> list[Profile]:
    """Add ``profile``, replacing one of the same name; returns the new list."""
    path = path or default_path()
    profiles = [p for p in load(path) if p.name != profile.name] + [profile]
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    atomic_write(path, tomli_w.dumps({"profiles": [asdict(p) for p in profiles]}).encode())
    return profiles
