"""A tool's config, checked before anything is built: a missing one, or one of a codebase the
tools do not run, is one ``error:`` line naming it (not a traceback from the registry)."""

import pytest

from mmbcn.commands.input_checks import load_tool_config
from mmbcn.utils.config_files import config_path

DEMO = 'demo/deeplabv3_r18-d8_bcn-ws_2xb2-demo-shapes.py'


def test_a_shipped_config_loads_by_its_name_and_in_its_codebase():
    config_file, cfg = load_tool_config(DEMO)
    assert config_file == config_path(DEMO)
    assert cfg.default_scope == 'mmseg'


def test_a_missing_config_is_named(tmp_path):
    with pytest.raises(SystemExit) as raised:
        load_tool_config(str(tmp_path / 'nowhere.py'))
    message = str(raised.value)
    assert message.startswith('error: ') and 'nowhere.py' in message


@pytest.mark.parametrize('scope_line', ["default_scope = 'mmocr'", ''])
def test_a_config_of_another_codebase_is_named_with_what_to_do(tmp_path, scope_line):
    config = tmp_path / 'other.py'
    config.write_text(f"{scope_line}\nmodel = dict(type='Recognizer')\n")
    with pytest.raises(SystemExit) as raised:
        load_tool_config(str(config))
    message = str(raised.value)
    assert message.startswith(f'error: config {config}: ')
    assert 'mmdet::, mmseg:: or mmpretrain::' in message
    assert "'mmocr'" in message if scope_line else 'None' in message
