"""The command-line entry point: operating-system errors become one line naming the path."""
from __future__ import annotations

import errno

from minimner.cli import main, os_error_message


def test_os_error_message_names_the_paths():
    assert os_error_message(OSError(errno.ENOSPC, "No space left on device", "run/last.npz")) == \
        "run/last.npz: No space left on device"
    assert os_error_message(OSError(errno.EXDEV, "Invalid cross-device link", "a", None, "b")) == \
        "a -> b: Invalid cross-device link"
    assert os_error_message(OSError("something odd")) == "something odd"


def test_a_permission_error_is_one_line(tmp_path, capsys, monkeypatch):
    """A read-only output folder (simulated: the tests may run as root, which ignores permissions)."""
    from minimner import atomic

    def refuse(*a, **kw):
        raise PermissionError(errno.EACCES, "Permission denied", str(tmp_path / "out"))

    monkeypatch.setattr(atomic.tempfile, "mkstemp", refuse)
    data = tmp_path / "data"
    data.mkdir()
    (data / "train.txt").write_text("IMGID:1\nRT\tO\n", encoding="utf-8")
    images = tmp_path / "images"
    images.mkdir()
    weights = tmp_path / "w.npz"
    weights.write_bytes(b"")
    rc = main(["features", "--images", str(images), "--ids", str(data), "--arch", "resnet18", "--weights",
               str(weights), "--out", str(tmp_path / "out"), "--no-progress"])
    assert rc == 2
    assert capsys.readouterr().err == f"minimner features: error: {tmp_path / 'out'}: Permission denied\n"
