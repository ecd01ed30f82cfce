"""Old import paths of moved modules: each warns once, naming the new path, and gives the new
module's own objects (one class for registries and isinstance checks)."""

import importlib
import subprocess
import sys

import pytest

MOVED = {
    'mmbcn.conv_norm': 'mmbcn.deploy.conv_norm',
    'mmbcn.folding': 'mmbcn.deploy.folding',
    'mmbcn.export': 'mmbcn.deploy.onnx_export',
    'mmbcn.compat': 'mmbcn.utils.feature_probes',
    'mmbcn.config_files': 'mmbcn.utils.config_files',
    'mmbcn.convert.authors': 'mmbcn.checkpoints.authors',
    'mmbcn.convert.backbones': 'mmbcn.checkpoints.backbones',
    'mmbcn.engine.bcn_update_rate_hook': 'mmbcn.engine.hooks.bcn_update_rate_hook',
    'mmbcn.engine.norm_statistics_hook': 'mmbcn.engine.hooks.norm_statistics_hook',
    'mmbcn.commands.random_state': 'mmbcn.engine.hooks.random_state_hook',
    'mmbcn.layers.residual_zero_init': 'mmbcn.models.residual_zero_init',
    'mmbcn.study.pool_norm_head': 'mmbcn.models.decode_heads.pool_norm_aspp_head',
}


@pytest.mark.parametrize('old', sorted(MOVED))
def test_an_old_path_warns_and_is_the_new_module(old, monkeypatch):
    for name in [old, 'mmbcn.convert']:
        monkeypatch.delitem(sys.modules, name, raising=False)
    with pytest.warns(FutureWarning, match=f'{old} moved to {MOVED[old]}'):
        module = importlib.import_module(old)
    assert module is importlib.import_module(MOVED[old])


def test_the_old_convert_package_gives_the_checkpoints_objects(monkeypatch):
    monkeypatch.delitem(sys.modules, 'mmbcn.convert', raising=False)
    with pytest.warns(FutureWarning, match='mmbcn.convert moved to mmbcn.checkpoints'):
        from mmbcn.convert import CheckpointLayoutError, read_backbone
    from mmbcn import checkpoints
    assert CheckpointLayoutError is checkpoints.CheckpointLayoutError
    assert read_backbone is checkpoints.read_backbone


def test_residual_zero_init_from_layers_is_the_registered_one():
    from mmengine.registry import WEIGHT_INITIALIZERS

    import mmbcn.layers
    with pytest.warns(FutureWarning, match='mmbcn.models.residual_zero_init'):
        old = mmbcn.layers.ResidualZeroInit
    assert old is WEIGHT_INITIALIZERS.get('ResidualZeroInit')


def test_the_old_config_files_command_still_runs():
    result = subprocess.run([sys.executable, '-m', 'mmbcn.config_files', 'path'],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    from mmbcn.utils.config_files import config_dir
    assert result.stdout.strip() == config_dir()
    assert 'mmbcn.utils.config_files' in result.stderr  # the warning names the new command
