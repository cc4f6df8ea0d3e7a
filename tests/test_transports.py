"""The local transport, and the quoting rules every transport shares."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from edgelat.errors import RemoteCommandError
from edgelat.profiler.transports import LocalTransport, _command_line


def test_run_returns_output_and_raises_with_evidence() -> None:
    t = LocalTransport()
    assert t.run(["echo", "hello world"]).stdout == "hello world\n"
    with pytest.raises(RemoteCommandError) as info:
        t.run([sys.executable, "-c", "import sys; sys.stderr.write('boom happened\\n'); sys.exit(3)"])
    assert info.value.exit_code == 3
    assert "boom happened" in str(info.value)
    assert t.run(["false"], check=False).exit_code == 1


def test_put_get_roundtrip(tmp_path: Path) -> None:
    t = LocalTransport()
    src = tmp_path / "a.bin"
    src.write_bytes(bytes(range(256)) * 10)
    t.put(src, str(tmp_path / "b.bin"))
    t.get(str(tmp_path / "b.bin"), tmp_path / "c.bin")
    assert (tmp_path / "c.bin").read_bytes() == src.read_bytes()


def test_process_lines() -> None:
    proc = LocalTransport().open_process([sys.executable, "-u", "-c", "import sys\nfor l in sys.stdin: print(l.strip().upper())"])
    proc.write_line("ping")
    assert proc.read_line(timeout=10) == "PING\n"
    proc.kill()
    assert proc.read_line(timeout=10) is None


def test_env_is_passed_and_names_checked() -> None:
    t = LocalTransport()
    assert t.run([sys.executable, "-c", "import os; print(os.environ['EDGELAT_X'])"], env={"EDGELAT_X": "a b"}).stdout == "a b\n"
    with pytest.raises(ValueError):
        _command_line(["true"], {"A;rm": "x"})


@pytest.mark.parametrize("word", ["a; touch pwned", "$(touch pwned)", "`touch pwned`", "x' ; touch pwned; '", "a\nb", "--help"])
def test_command_line_quotes_every_word(word: str, tmp_path: Path) -> None:
    """What the SSH transport sends is parsed by a shell: no word may escape its quoting."""
    import subprocess

    line = _command_line(["printf", "%s", word], {"V": word})
    out = subprocess.run(["sh", "-c", line], capture_output=True, cwd=tmp_path)
    assert out.stdout.decode() == word
    assert not (tmp_path / "pwned").exists()
