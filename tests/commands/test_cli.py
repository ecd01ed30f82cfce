"""The tools' command-line handling: clear errors for settings that would go wrong."""

import os.path as osp

import pytest
import torch
import torch.distributed as dist
from mmbcn_testing.dist_utils import free_port
from mmbcn_testing.paths import ROOT

from mmbcn.commands import cli

BCN_CONFIG = osp.join(ROOT, 'configs/mask_rcnn/mask-rcnn_r50_fpn_bcn-ws_8xb2-1x_coco.py')
SEG_CONFIG = osp.join(
    ROOT, 'configs/deeplabv3/deeplabv3_r50-d8_bcn-ws_8xb1-40k_voc12aug-512x512.py')


@pytest.mark.parametrize('implementation', ['torch', 'mmcv'])
def test_sync_bn_keeps_bcn_and_converts_plain_bn(implementation):
    """``sync_bn='torch'`` / ``'mmcv'`` (MMEngine converts every _BatchNorm) leaves BCN a
    synchronized BCN and makes a plain BN the implementation's SyncBN."""
    from mmbcn_testing.models import build_model
    from mmengine.model import convert_sync_batchnorm

    from mmbcn import BatchChannelNorm2d

    args = cli.train_parser().parse_args(
        [BCN_CONFIG, '--cfg-options', f'sync_bn={implementation}'])
    cfg = cli.load_config(args)
    model = build_model(cfg)
    model.plain_bn = torch.nn.BatchNorm2d(4)  # the BCN configs hold no plain BN of their own
    bcn = [name for name, m in model.named_modules() if isinstance(m, BatchChannelNorm2d)]
    for name in bcn:
        model.get_submodule(name).sync_stats = False  # so that the conversion must turn it on
    if implementation == 'mmcv':  # mmcv's SyncBatchNorm is built in a process group
        dist.init_process_group('gloo', init_method=f'tcp://127.0.0.1:{free_port()}', rank=0,
                                world_size=1)
    try:
        model = convert_sync_batchnorm(model, cfg.sync_bn)  # what the Runner does
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
    assert bcn and [name for name, m in model.named_modules()
                    if isinstance(m, BatchChannelNorm2d)] == bcn
    assert all(model.get_submodule(name).sync_stats for name in bcn)
    if implementation == 'torch':
        sync_batch_norm = torch.nn.SyncBatchNorm
    else:
        from mmcv.ops import SyncBatchNorm as sync_batch_norm
    assert [name for name, m in model.named_modules() if type(m) is sync_batch_norm] == [
        'plain_bn']


def test_amp_without_cuda_is_a_clear_error():
    args = cli.train_parser().parse_args([BCN_CONFIG, '--amp'])
    cfg = cli.load_config(args)
    with pytest.raises(SystemExit, match='--amp needs a CUDA GPU'):
        cli.apply_train_options(cfg, args)


class Payload:
    """Something weights-only loading must refuse."""


def bad_checkpoints(tmp_path):
    garbage = tmp_path / 'garbage.pth'
    garbage.write_bytes(b'not a checkpoint at all' * 100)
    pickled = tmp_path / 'pickled.pth'
    torch.save({'state_dict': {}, 'payload': Payload()}, pickled)
    return [(tmp_path / 'missing.pth', 'no such file'),
            (garbage, 'not a readable torch checkpoint'),
            (pickled, 'weights-only loading refuses')]


@pytest.mark.parametrize('tool', ['train', 'test'])
def test_bad_checkpoint_fails_before_anything_is_built(tmp_path, monkeypatch, tool):
    monkeypatch.chdir(tmp_path)
    built = []
    monkeypatch.setattr(cli, 'build_runner', lambda cfg: built.append(cfg))
    for path, problem in bad_checkpoints(tmp_path):
        argv = ([BCN_CONFIG, '--resume', str(path)] if tool == 'train'
                else [BCN_CONFIG, str(path)])
        label = '--resume' if tool == 'train' else 'checkpoint'
        with pytest.raises(SystemExit, match=f'error: {label} {path}: .*{problem}'):
            getattr(cli, tool)(argv)
    assert not built and not (tmp_path / 'work_dirs').exists()


def test_missing_config_is_one_clear_line(tmp_path):
    with pytest.raises(SystemExit, match='error: No config .*nope.py.*neither a file'):
        cli.test([str(tmp_path / 'nope.py'), str(tmp_path / 'x.pth')])


def test_work_dir_defaults_to_the_config_name_and_resume_auto():
    args = cli.train_parser().parse_args([SEG_CONFIG, '--resume', '--auto-scale-lr'])
    cfg = cli.load_config(args)
    cli.apply_train_options(cfg, args)
    assert cfg.work_dir == osp.join('./work_dirs', osp.splitext(osp.basename(SEG_CONFIG))[0])
    assert cfg.resume is True and cfg.load_from is None
    assert cfg.auto_scale_lr.enable is True


def test_test_options_per_codebase(tmp_path):
    det = cli.test_parser().parse_args([BCN_CONFIG, 'c.pth', '--out', str(tmp_path / 'r.pkl'),
                                        '--show-dir', str(tmp_path / 'vis')])
    cfg = cli.load_config(det)
    cli.apply_test_options(cfg, det)
    assert cfg.load_from == 'c.pth'
    assert cfg.test_evaluator[-1]['type'] == 'DumpDetResults'
    assert cfg.default_hooks.visualization.test_out_dir == str(tmp_path / 'vis')

    seg = cli.test_parser().parse_args([SEG_CONFIG, 'c.pth', '--out', str(tmp_path / 'out')])
    cfg = cli.load_config(seg)
    cli.apply_test_options(cfg, seg)
    assert cfg.test_evaluator.output_dir == str(tmp_path / 'out')


def test_non_openmmlab_config_is_a_clear_error(tmp_path):
    config = tmp_path / 'plain.py'
    config.write_text("model = dict(type='Foo')\n")
    with pytest.raises(ValueError, match="mmbcn tools run configs of"):
        cli.load_config(cli.train_parser().parse_args([str(config)]))


def test_a_config_can_be_named_among_the_shipped_ones(tmp_path, monkeypatch):
    from mmbcn.utils.config_files import resolve_config
    monkeypatch.chdir(tmp_path)  # away from the checkout: the name alone must do
    name = 'demo/deeplabv3_r18-d8_bcn-ws_2xb2-demo-shapes.py'
    assert resolve_config(name) == osp.join(ROOT, 'configs', name)
    assert resolve_config(f'configs/{name}') == osp.join(ROOT, 'configs', name)
    with pytest.raises(FileNotFoundError, match='neither a file nor one of the configs'):
        resolve_config('demo/no-such-config.py')
