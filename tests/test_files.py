"""pixel_cnn_pp/files.py: files land whole, with a new file's usual mode."""

import json
import os
import stat

import pytest

from pixel_cnn_pp import files


def test_written_json_is_whole_and_readable_as_any_new_file(tmp_path):
    old = os.umask(0o022)
    try:
        path = tmp_path / 'sub' / 'config.json'
        files.write_json(str(path), {'b': 1, 'a': [2, 3]})
    finally:
        os.umask(old)
    assert json.loads(path.read_text()) == {'a': [2, 3], 'b': 1}
    # mkstemp creates 0600 files; other users of a shared machine must be able to read it.
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o644
    assert os.listdir(path.parent) == ['config.json']


def test_unserialisable_json_leaves_the_old_file_and_no_temporary(tmp_path):
    path = tmp_path / 'flags.json'
    files.write_json(str(path), {'ok': True})
    with pytest.raises(TypeError):
        files.write_json(str(path), {'bad': object()})
    assert json.loads(path.read_text()) == {'ok': True}
    assert os.listdir(tmp_path) == ['flags.json']
