"""mmbcn checkpoints through the rest of OpenMMLab, run as a user runs it.

The three demo configs (classification, detection, segmentation) are trained for a few
iterations with mmbcn's ``tools/train.py`` (so the checkpoints are the Runner's, message hub and
all). Then, each in a fresh interpreter that never imports mmbcn itself (the configs'
``custom_imports`` do): mmdet's, mmseg's and mmpretrain's own ``tools/test.py`` and
``analysis_tools/get_flops.py`` from their installed packages (``<pkg>/.mim/tools``), what mmdet's
``benchmark.py --fuse-conv-bn`` does to the model, and the inference APIs (``init_detector`` /
``inference_detector`` / ``DetInferencer``, ``init_model`` / ``inference_model`` /
``MMSegInferencer``, ``get_model`` / ``ImageClassificationInferencer``). mmseg 1.2.2's own
``get_flops.py`` fails on every model (it passes both an input shape and inputs to MMEngine's
counter), so its steps are run here with the inputs alone.
"""

import copy
import json
import os
import os.path as osp
import re
import subprocess
import sys
import textwrap
from functools import partial
from importlib.util import find_spec
from itertools import islice

import numpy as np
import pytest
import torch
from mmbcn_testing.paths import ROOT
from mmcv.cnn import fuse_conv_bn
from mmdet.structures import DetDataSample
from mmengine.analysis import FlopAnalyzer, parameter_count
from mmengine.analysis.print_helper import _format_size
from mmengine.config import Config
from mmengine.registry import DefaultScope
from mmengine.runner import Runner, load_checkpoint
from torch import nn

from mmbcn import BatchChannelNorm2d, WSConv2d
from mmbcn.datasets import ensure_demo_data
from mmbcn.utils.config_files import build_model

pytestmark = pytest.mark.slow  # starts processes or trains

DEMOS = {
    'mmpretrain': ('configs/demo/resnet18_bcn-ws_1xb16-demo-shapes.py',
                   ['train_cfg.max_epochs=1', 'train_cfg.val_interval=10'], 'epoch_1.pth'),
    'mmdet': ('configs/demo/mask-rcnn_r18_fpn_bcn-ws_2xb2-demo-shapes.py',
              ['train_cfg.max_epochs=1', 'train_cfg.val_interval=10',
               'model.test_cfg.rcnn.score_thr=0.0'], 'epoch_1.pth'),
    'mmseg': ('configs/demo/deeplabv3_r18-d8_bcn-ws_2xb2-demo-shapes.py',
              ['train_cfg.max_iters=4', 'train_cfg.val_interval=4',
               'default_hooks.checkpoint.interval=4'], 'iter_4.pth'),
}
METRIC = {'mmpretrain': 'accuracy/top1', 'mmdet': 'coco/bbox_mAP', 'mmseg': 'mIoU'}
IMAGE = {'mmpretrain': 'data/mmbcn_demo/imagenet/val', 'mmdet': 'data/mmbcn_demo/coco/val',
         'mmseg': 'data/mmbcn_demo/voc/JPEGImages'}


def package_tool(package, *parts):
    return osp.join(osp.dirname(find_spec(package).origin), '.mim', 'tools', *parts)


def run(args, timeout=600):
    """Run a command from the repository root (the demo configs read data/ from there)."""
    env = {k: v for k, v in os.environ.items() if k != 'PYTHONPATH'}
    result = subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True,
                            timeout=timeout)
    assert result.returncode == 0, (f'{args} failed ({result.returncode}):\n'
                                    f'{result.stdout[-3000:]}\n{result.stderr[-5000:]}')
    return result.stdout + result.stderr


def first_image(package):
    folder = osp.join(ROOT, IMAGE[package])
    for dirpath, _, files in sorted(os.walk(folder)):
        images = sorted(f for f in files if f.lower().endswith(('.jpg', '.jpeg', '.png')))
        if images:
            return osp.join(dirpath, images[0])
    raise FileNotFoundError(folder)


@pytest.fixture(scope='module')
def trained(tmp_path_factory):
    """{package: (config, checkpoint written by MMEngine's Runner through tools/train.py)}."""
    cwd = os.getcwd()
    os.chdir(ROOT)
    ensure_demo_data()
    os.chdir(cwd)
    root = tmp_path_factory.mktemp('toolbox')
    checkpoints = {}
    for package, (config, options, name) in DEMOS.items():
        work_dir = root / package
        run([sys.executable, 'tools/train.py', config, '--work-dir', str(work_dir),
             '--cfg-options', *options])
        checkpoints[package] = (config, str(work_dir / name), options, root)
    return checkpoints


@pytest.mark.parametrize('package', DEMOS)
def test_the_packages_own_test_script_evaluates_an_mmbcn_checkpoint(trained, package):
    config, checkpoint, options, root = trained[package]
    out = run([sys.executable, package_tool(package, 'test.py'), config, checkpoint,
               '--work-dir', str(root / f'{package}-test'), '--cfg-options', *options])
    assert METRIC[package] in out
    assert 'Unsupported global' not in out


def plain_twin(model: nn.Module) -> nn.Module:
    """A copy of ``model`` with an ``nn.BatchNorm2d`` for each BCN and an ``nn.Conv2d`` of the
    same geometry for each WSConv2d, under the same names: what every FLOP counter counts."""
    twin = copy.deepcopy(model)
    for name, module in list(twin.named_modules()):
        if isinstance(module, BatchChannelNorm2d):
            plain = nn.BatchNorm2d(module.num_features, module.eps, affine=module.affine)
        elif isinstance(module, WSConv2d):
            plain = nn.Conv2d(module.in_channels, module.out_channels, module.kernel_size,
                              module.stride, module.padding, module.dilation, module.groups,
                              module.bias is not None, module.padding_mode)
        else:
            continue
        parent, _, attribute = name.rpartition('.')
        setattr(twin.get_submodule(parent), attribute, plain)
    return twin.eval()


def counted(module: nn.Module, inputs) -> FlopAnalyzer:
    return FlopAnalyzer(module, inputs).unsupported_ops_warnings(False) \
        .uncalled_modules_warnings(False)


def reference_count(model: nn.Module, inputs, set_forward=lambda net: None) -> dict:
    """What MMEngine's counter should say of ``model`` (BCN and WSConv2d inside), from layers
    it counts without mmbcn: its count of the plain twin (WSConv2d as the conv it computes,
    BCN's batch stage as the eval-mode BatchNorm it is) plus, for each call of a BCN layer,
    its count of a GroupNorm of the BCN's groups on that input (the channel stage).
    Parameters: the twin's plus each BCN's channel-stage affine (2 x groups).
    ``set_forward(net)`` points ``net.forward`` at what the tool traces."""
    bcn = {name: m for name, m in model.named_modules() if isinstance(m, BatchChannelNorm2d)}
    ws_convs = [name for name, m in model.named_modules() if isinstance(m, WSConv2d)]
    twin = plain_twin(model)
    assert not any(isinstance(m, (BatchChannelNorm2d, WSConv2d)) for m in twin.modules())
    assert all(type(twin.get_submodule(name)) is nn.Conv2d for name in ws_convs)
    set_forward(twin)
    calls = []
    hooks = [twin.get_submodule(name).register_forward_hook(
        lambda m, args, out, name=name: calls.append((name, tuple(map(int, args[0].shape)))))
        for name in bcn]
    analyzer = counted(twin, inputs)
    flops, by_module = analyzer.total(), analyzer.by_module()  # one trace: one call each
    for hook in hooks:
        hook.remove()
    channel_stage = sum(
        counted(nn.GroupNorm(bcn[name].num_groups, bcn[name].num_features,
                             affine=bcn[name].affine), torch.zeros(shape)).total()
        for name, shape in calls)
    assert bcn and ws_convs and channel_stage > 0  # both layers there, the BCNs were called
    return dict(flops=flops + channel_stage, channel_stage=channel_stage,
                ws_conv_flops=sum(by_module[name] for name in ws_convs),
                params=parameter_count(twin)[''] + sum(
                    2 * m.num_groups for m in bcn.values() if m.affine))


def printed(out: str, what: str) -> str:
    found = re.findall(rf'^{what}: (\S+)$', out, re.MULTILINE)
    assert len(found) == 1, out[-3000:]
    return found[0]


def assert_printed_figures_are(out: str, reference: dict) -> None:
    """The tool's figures are the reference's at the precision it prints (3 decimals of the
    unit), and that precision tells a miscount apart: a counter that dropped BCN's channel
    stage, or WSConv2d's conv, would print another figure."""
    assert printed(out, 'Flops') == _format_size(reference['flops'])
    assert printed(out, 'Params') == _format_size(reference['params'])
    for miscount in ('channel_stage', 'ws_conv_flops'):
        assert _format_size(reference['flops'] - reference[miscount]) != printed(out, 'Flops')


@pytest.fixture(scope='module')
def demo_data():
    ensure_demo_data(osp.join(ROOT, 'data/mmbcn_demo'))


# The detector's head FLOPs depend on how many boxes survive NMS, which depends on the random
# weights each build draws: no suppression and no score threshold make it each stage's
# max_per_img (100 proposals, 20 detections) in the tool's model and the reference alike.
FIXED_BOX_COUNTS = {'model.test_cfg.rpn.nms.iou_threshold': 1.0,
                    'model.test_cfg.rcnn.nms.iou_threshold': 1.0,
                    'model.test_cfg.rcnn.score_thr': 0.0}


def test_mmdet_get_flops_counts_wsconv2d_as_a_conv_and_bcn_as_two_norms(demo_data):
    """mmdet's own get_flops.py (a fresh interpreter; mmbcn from the config's custom_imports)
    on the BCN+WS Mask R-CNN prints the reference count of the same model, on the same images
    (the first two of the val set, averaged as the tool averages)."""
    config = DEMOS['mmdet'][0]
    out = run([sys.executable, package_tool('mmdet', 'analysis_tools', 'get_flops.py'), config,
               '--num-images', '2', '--cfg-options',
               *(f'{key}={value}' for key, value in FIXED_BOX_COUNTS.items())])
    assert 'unordered_map' not in out
    cfg = Config.fromfile(osp.join(ROOT, config))
    cfg.val_dataloader.batch_size = 1
    cfg.merge_from_dict(FIXED_BOX_COUNTS)
    model = build_model(cfg).eval()
    cwd = os.getcwd()
    os.chdir(ROOT)  # the config's data_root is relative to the checkout
    try:
        with DefaultScope.overwrite_default_scope('mmdet'):
            loader = Runner.build_dataloader(cfg.val_dataloader)
            batches = list(islice(loader, 2))
    finally:
        os.chdir(cwd)
    references = []
    for batch in batches:
        data = model.data_preprocessor(batch)

        def set_forward(net, samples=data['data_samples']):
            net.forward = partial(net.forward, data_samples=samples)
        references.append(reference_count(model, data['inputs'], set_forward))
    reference = dict(references[0], flops=int(np.average([r['flops'] for r in references])))
    assert_printed_figures_are(out, reference)


def test_mmpretrain_get_flops_counts_wsconv2d_as_a_conv_and_bcn_as_two_norms(demo_data):
    """mmpretrain's own get_flops.py (the backbone, through ``extract_feat``) on the BCN+WS
    ResNet-18 prints the reference count of the same model. A 32x32 input keeps the count
    under 1e8, which the tool prints in M to 1K; the channel stage is under 1% of it."""
    config = DEMOS['mmpretrain'][0]
    out = run([sys.executable, package_tool('mmpretrain', 'analysis_tools', 'get_flops.py'),
               config, '--shape', '32', '32'])
    assert 'unordered_map' not in out
    from mmpretrain import get_model
    model = get_model(osp.join(ROOT, config)).eval()

    def set_forward(net):
        net.forward = net.extract_feat
    assert_printed_figures_are(out, reference_count(model, (torch.rand(1, 3, 32, 32),),
                                                    set_forward))


def test_what_mmseg_get_flops_does_counts_the_bcn_segmentor():
    """mmseg 1.2.2's get_flops.py passes both ``input_shape`` and ``inputs`` to MMEngine's
    counter, which refuses that for every model, BN ones included; this runs its steps with
    ``inputs`` alone: the model from the config, eval mode, the preprocessed random image.
    In-process the counts are exact: the reference's, to the FLOP and the parameter."""
    from mmengine.analysis import get_model_complexity_info
    from mmseg.structures import SegDataSample

    cfg = Config.fromfile(osp.join(ROOT, DEMOS['mmseg'][0]))
    model = build_model(cfg)
    model.auxiliary_head = None
    data = model.data_preprocessor({'inputs': [torch.rand(3, 64, 64)], 'data_samples': [
        SegDataSample(metainfo=dict(ori_shape=(64, 64), pad_shape=(64, 64)))]})
    model.eval()
    info = get_model_complexity_info(model, inputs=data['inputs'], show_table=False,
                                     show_arch=False)
    reference = reference_count(model, data['inputs'])
    assert info['flops'] == reference['flops']
    assert info['params'] == reference['params']


@pytest.mark.skipif(not torch.cuda.is_available(),
                    reason="needs CUDA: mmdet's InferenceBenchmark moves the model to the GPU")
def test_mmdet_benchmark_with_fuse_conv_bn_runs_on_the_bcn_model(trained):
    config, checkpoint, _, _ = trained['mmdet']
    out = run([sys.executable, package_tool('mmdet', 'analysis_tools', 'benchmark.py'), config,
               '--checkpoint', checkpoint, '--task', 'inference', '--fuse-conv-bn',
               '--max-iter', '3', '--num-warmup', '1', '--log-interval', '1'])
    assert 'fps' in out.lower()


def test_fuse_conv_bn_on_the_trained_detector_keeps_its_detections(trained):
    """What ``benchmark.py --fuse-conv-bn`` does to the model (``mmdet.utils.benchmark``),
    on the trained checkpoint: the same features in float64, the same detections in float32
    (mmcv's RoIAlign runs in float32)."""
    config, checkpoint, _, _ = trained['mmdet']
    cfg = Config.fromfile(osp.join(ROOT, config))
    model = build_model(cfg)
    load_checkpoint(model, checkpoint, map_location='cpu')
    model = model.double().eval()
    image = torch.rand(1, 3, 96, 96, dtype=torch.float64) * 255
    fused = fuse_conv_bn(copy.deepcopy(model))
    sample = DetDataSample(metainfo=dict(img_shape=(96, 96), ori_shape=(96, 96),
                                         scale_factor=(1.0, 1.0), batch_input_shape=(96, 96)))
    with torch.no_grad():
        features = model.extract_feat(image)
        fused_features = fused.extract_feat(image)
    assert not any(isinstance(m, BatchChannelNorm2d) for m in fused.modules())
    torch.testing.assert_close(fused_features, features, rtol=1e-9, atol=1e-9)  # lengths too
    model, fused, image = model.float(), fused.float(), image.float()
    with torch.no_grad():
        want = model.predict(image, [sample.clone()])[0].pred_instances
        got = fused.predict(image, [sample.clone()])[0].pred_instances
    assert len(want) > 0
    torch.testing.assert_close(got.scores, want.scores, rtol=1e-3, atol=1e-4)
    torch.testing.assert_close(got.bboxes, want.bboxes, rtol=1e-3, atol=1e-2)


INFERENCE = {
    'mmdet': """
        from mmdet.apis import DetInferencer, inference_detector, init_detector
        model = init_detector(CONFIG, CHECKPOINT, device='cpu')
        api = inference_detector(model, IMAGE).pred_instances
        inferencer = DetInferencer(model=CONFIG, weights=CHECKPOINT, device='cpu')
        other = inferencer(IMAGE, return_datasamples=True)['predictions'][0].pred_instances
        same = bool(torch.allclose(api.scores, other.scores, atol=1e-5))
        print('RESULT=' + json.dumps(dict(classes=model.dataset_meta['classes'], count=len(api),
                                          same=same, outputs=int(api.bboxes.shape[-1]))))
    """,
    'mmseg': """
        from mmseg.apis import MMSegInferencer, inference_model, init_model
        model = init_model(CONFIG, CHECKPOINT, device='cpu')
        api = inference_model(model, IMAGE).seg_logits.data
        inferencer = MMSegInferencer(model=CONFIG, weights=CHECKPOINT, device='cpu')
        other = inferencer(IMAGE, return_datasamples=True).seg_logits.data
        print('RESULT=' + json.dumps(dict(classes=model.dataset_meta['classes'],
                                          count=int(api.shape[0]),
                                          same=bool(torch.allclose(api, other, atol=1e-5)),
                                          outputs=int(api.shape[0]))))
    """,
    'mmpretrain': """
        from mmpretrain import ImageClassificationInferencer, get_model
        model = get_model(CONFIG, pretrained=CHECKPOINT, device='cpu')
        api = ImageClassificationInferencer(model=model)(IMAGE)[0]
        inferencer = ImageClassificationInferencer(model=CONFIG, pretrained=CHECKPOINT,
                                                   device='cpu')
        other = inferencer(IMAGE)[0]
        same = bool(np.allclose(api['pred_scores'], other['pred_scores'], atol=1e-5))
        print('RESULT=' + json.dumps(dict(classes=list(inferencer.classes),
                                          count=len(other['pred_scores']), same=bool(same),
                                          outputs=len(other['pred_scores']))))
    """,
}


@pytest.mark.parametrize('package', DEMOS)
def test_the_inference_apis_load_an_mmbcn_checkpoint(trained, package):
    config, checkpoint, _, _ = trained[package]
    script = textwrap.dedent(f"""
        import json, sys
        import numpy as np
        import torch
        CONFIG, CHECKPOINT, IMAGE = {osp.join(ROOT, config)!r}, {checkpoint!r}, {
            first_image(package)!r}
        assert 'mmbcn' not in sys.modules
    """) + textwrap.dedent(INFERENCE[package])
    out = run([sys.executable, '-c', script])  # progress bars share the line: find the marker
    result = json.loads(out.rsplit('RESULT=', 1)[-1].splitlines()[0])
    assert result['same'], result
    assert len(result['classes']) >= 3  # the demo's class names, from the checkpoint's meta
    if package != 'mmdet':  # a score per class / a logit map per class
        assert result['outputs'] == len(result['classes'])
