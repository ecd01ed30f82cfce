"""The tools' command-line handling: clear errors for settings that would go wrong."""

import copy
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
    from mmengine.model import convert_sync_batchnorm

    from mmbcn import BatchChannelNorm2d
    from mmbcn.utils.config_files import build_model

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


CLS_CONFIG = osp.join(ROOT, 'configs/imagenet/resnet50_bcn-ws_8xb32-90e_in1k.py')


def _dump_file(cfg, evaluators):
    """mmdet and mmpretrain: the config's own evaluators, then the dump, built as the Runner
    builds it (``out_file_path`` is where the dump metric writes)."""
    from mmengine.registry import METRICS
    assert cfg.test_evaluator[:-1] == evaluators  # the config's metrics still run
    return METRICS.build(cfg.test_evaluator[-1]).out_file_path


def _mmseg_output_dir(cfg, evaluators):
    """mmseg: its IoUMetric itself writes the results to ``output_dir``."""
    from mmengine.registry import METRICS
    kept = {k: v for k, v in cfg.test_evaluator.items() if k not in ('output_dir', 'keep_results')}
    assert [kept] == evaluators  # the same metric, told where to write
    return METRICS.build(cfg.test_evaluator).output_dir


def _drawn_to(scope, cfg, name):
    """(folder, draws, shows): where the scope's visualization hook (built with the visualizer
    it draws with, as the Runner builds both) saves drawn test images, whether it draws at all,
    whether it opens a window."""
    from mmengine.registry import HOOKS, VISUALIZERS
    visualizer = VISUALIZERS.build(dict(cfg.visualizer, name=name))
    hook = HOOKS.build(cfg.default_hooks.visualization)
    if scope == 'mmdet':
        return hook.test_out_dir, hook.draw, hook.show
    if scope == 'mmseg':  # the hook draws through the visualizer's LocalVisBackend
        backend = visualizer._vis_backends['LocalVisBackend']
        return osp.dirname(backend._save_dir), hook.draw, hook.show
    return hook.out_dir, hook.enable, hook.show


@pytest.mark.parametrize('scope, config, out, where_out_goes', [
    ('mmdet', BCN_CONFIG, 'r.pkl', _dump_file),
    ('mmseg', SEG_CONFIG, 'out', _mmseg_output_dir),
    ('mmpretrain', CLS_CONFIG, 'r.pkl', _dump_file),
], ids=['mmdet', 'mmseg', 'mmpretrain'])
def test_test_options_per_codebase(tmp_path, scope, config, out, where_out_goes):
    """The checkpoint, ``--out`` and ``--show-dir`` reach what each codebase's Runner builds:
    the metric that writes the results, and the visualization hook that draws (without
    ``--show``, no window)."""
    from mmengine.registry import DefaultScope

    from mmbcn.utils.config_files import config_scope

    out, show_dir = str(tmp_path / out), str(tmp_path / 'vis')
    args = cli.test_parser().parse_args([config, 'c.pth', '--out', out,
                                         '--show-dir', show_dir])
    cfg = cli.load_config(args)
    assert config_scope(cfg) == scope
    evaluators = copy.deepcopy(cfg.test_evaluator)
    evaluators = evaluators if isinstance(evaluators, list) else [evaluators]
    cli.apply_test_options(cfg, args)
    assert cfg.load_from == 'c.pth'
    with DefaultScope.overwrite_default_scope(scope):
        assert where_out_goes(cfg, evaluators) == out
        assert _drawn_to(scope, cfg, f'test_cli_{scope}_{tmp_path.name}') == (
            show_dir, True, False)


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
