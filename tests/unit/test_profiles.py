"""Saved console profiles: no password, atomic, clear errors for a damaged file."""

from __future__ import annotations

from pathlib import Path

import pytest

from tui.services import profiles
from tui.services.profiles import Profile, ProfileError


def test_profiles_round_trip_and_replace_by_name(tmp_path: Path) -> None:
    path = tmp_path / "cfg" / "profiles.toml"
    assert profiles.load(path) == []
    profiles.save(Profile("edge", "10.0.0.11"), path)
    profiles.save(Profile("dr", "10.1.0.11", 2222, "ops"), path)
    profiles.save(Profile("edge", "10.0.0.12"), path)
    assert profiles.load(path) == [Profile("dr", "10.1.0.11", 2222, "ops"),
                                   Profile("edge", "10.0.0.12")]
    assert "password" not in path.read_text()


@pytest.mark.parametrize("text, words", [
    ("[[profiles]\n", "cannot read"),
    ('[[profiles]]\nname = "x"\n', "profiles[0]"),
    ('[[profiles]]\nname = "x"\nhost = "h"\nport = 70000\n', "1 to 65535"),
])
def test_a_damaged_file_is_named_and_kept(tmp_path: Path, text: str, words: str) -> None:
    path = tmp_path / "profiles.toml"
    path.write_text(text)
    with pytest.raises(ProfileError) as err:
        profiles.load(path)
    assert str(path) in str(err.value) and words in str(err.value)
    with pytest.raises(ProfileError):
        profiles.save(Profile("y", "h"), path)
    assert path.read_text() == text
