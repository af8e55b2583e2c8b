"""SIGKILL a process writing cluster.toml at random moments; the file must never tear.

A child process rewrites cluster.toml through TomlFile.replace in a loop,
printing each version once its write has returned.  The parent kills it
after a random delay and checks that the file is byte for byte either the
last version reported complete or the one after it (written but not yet
reported), and that every backup generation is intact too.
"""

import inspect
import os
import random
import re
import select
import signal
import subprocess
import sys
import time
import tomllib
from pathlib import Path

from tui.node.store import remove_stale_temp_files

REPO = Path(__file__).resolve().parents[2]
KILLS = 200
BUDGET_S = 120.0
MIN_MID_WRITE = 10
SEED = 1729
KEEP = 20


def content(version: int) -> bytes:
    """The exact bytes of cluster.toml at `version`: ~340 KiB, every line tied to the version."""
    epoch = 1 + version // 100
    # Literal strings keep tomllib fast (it scans them with str.index), so the
    # writer spends its time writing and fsyncing, where kills should land.
    chunk = f"{version:08x}-" * 120
    lines = [f"b{i:03d} = '{i:03d}:{chunk}'\n" for i in range(320)]
    return f"epoch = {epoch}\nversion = {version}\n\n[blocks]\n{''.join(lines)}".encode()


WRITER = (
    "import sys\n"
    "from pathlib import Path\n"
    "from tui.node.store import Generations, StoreError, TomlFile\n"
    + inspect.getsource(content)
    + """
home = Path(sys.argv[1])
store = TomlFile(home / "cluster.toml", Generations(home / "backups", keep=%d))
try:
    version = store.load()["version"] + 1
except StoreError:
    version = 1
while True:
    store.replace(content(version))
    sys.stdout.write(f"{version}\\n")
    sys.stdout.flush()
    version += 1
"""
    % KEEP
)

TEMP = re.compile(r"\..+\.tmp-.+")
GENERATION = re.compile(r"cluster\.(\d+)\.(\d+)\.toml")


def temp_files(directory: Path) -> list[Path]:
    if not directory.exists():
        return []
    return sorted(p for p in directory.iterdir() if TEMP.fullmatch(p.name))


def run_writer_and_kill(home: Path, delay: float, log: Path) -> list[int]:
    """Start the writer, wait for its first complete write, kill it after `delay`; return versions it completed."""
    with open(log, "wb") as stderr:
        proc = subprocess.Popen(
            # -S: skip site-packages; the writer needs only the stdlib and the repo.
            [sys.executable, "-S", "-c", WRITER, str(home)],
            stdout=subprocess.PIPE,
            stderr=stderr,
            env={**os.environ, "PYTHONPATH": str(REPO)},
        )
    try:
        ready, _, _ = select.select([proc.stdout], [], [], 10)
        assert ready, "writer did not complete a write within 10 s"
        first = proc.stdout.readline()
        assert first, f"writer exited with {proc.wait()}:\n{log.read_text()}"
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        output = first + proc.stdout.read()
        assert proc.wait() == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()
    # A kill can cut the last line short; only newline-terminated lines count.
    return [int(line) for line in output.split(b"\n")[:-1]]


def check_generations(backups: Path, current: int, verified: set) -> None:
    """Every generation parses and is exactly its version; `verified` skips files already checked."""
    names = [p for p in backups.iterdir() if not TEMP.fullmatch(p.name)] if backups.exists() else []
    # A kill between saving a generation and pruning leaves one extra.
    assert len(names) <= KEEP + 1, sorted(p.name for p in names)
    for path in names:
        match = GENERATION.fullmatch(path.name)
        assert match, f"unexpected file in backups: {path.name}"
        epoch, version = int(match[1]), int(match[2])
        # Equal when killed after backing up `current` but before replacing it.
        assert version <= current
        st = path.stat()
        # A generation can be rewritten under the same name (a new inode), so
        # the name alone does not identify what was checked.
        key = (path.name, st.st_ino, st.st_size, st.st_mtime_ns)
        if key in verified:
            continue
        data = path.read_bytes()
        doc = tomllib.loads(data.decode())
        assert (doc["epoch"], doc["version"]) == (epoch, version)
        assert data == content(version), f"{path.name} differs from version {version}"
        verified.add(key)


def test_sigkill_during_replace_never_tears_the_file(tmp_path, capsys):
    home = tmp_path / "node"
    home.mkdir()
    path = home / "cluster.toml"
    backups = home / "backups"
    rng = random.Random(SEED)
    started = time.monotonic()
    kills = mid_write = after_write = 0
    on_disk = 0
    verified: set = set()

    log = tmp_path / "writer.err"
    for _ in range(KILLS):
        elapsed = time.monotonic() - started
        assert elapsed < BUDGET_S, f"only {kills} kills in {elapsed:.0f} s"

        completed = run_writer_and_kill(home, rng.uniform(0, 0.030), log)
        kills += 1
        assert completed, "writer reported no complete write"
        # The writer resumes from what is on disk, so versions continue.
        assert completed == list(range(on_disk + 1, completed[-1] + 1))

        data = path.read_bytes()
        version = tomllib.loads(data.decode()).get("version")
        assert isinstance(version, int), f"cluster.toml is torn: {len(data)} bytes, no version"
        assert data == content(version), f"cluster.toml is not exactly version {version}"
        assert version in (completed[-1], completed[-1] + 1)
        after_write += version == completed[-1] + 1
        check_generations(backups, version, verified)

        leftovers = temp_files(home) + temp_files(backups)
        mid_write += bool(leftovers)
        removed = remove_stale_temp_files(home) + remove_stale_temp_files(backups)
        assert sorted(removed) == sorted(leftovers)
        on_disk = version

    elapsed = time.monotonic() - started
    with capsys.disabled():
        print(
            f"\n{kills} kills in {elapsed:.1f} s: {mid_write} mid-write (temp file left), "
            f"{after_write} between rename and report, final version {on_disk}"
        )
    assert kills == KILLS
    assert elapsed < BUDGET_S
    assert mid_write >= MIN_MID_WRITE, f"only {mid_write} of {kills} kills landed mid-write"
