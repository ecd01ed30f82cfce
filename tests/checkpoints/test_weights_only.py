"""Checkpoints that MMEngine's Runner writes load weights-only once mmbcn is imported.

Written by a real Runner (a BCN model, 2 iterations) in a fresh interpreter, once with mmbcn's
pickling (every mmbcn config imports mmbcn) and once with MMEngine's own (``getattr`` calls;
mmbcn's ``copyreg`` entry removed, since on this CPU torch the Runner needs mmbcn's torchvision
import fix), then loaded as OpenMMLab loads them (``mmengine.runner.load_checkpoint``,
``torch.load`` with its default ``weights_only=True``).
"""

import inspect
import os
import os.path as osp
import pickle
import subprocess
import sys
import textwrap
from fractions import Fraction  # a class no checkpoint allow-list holds

import pytest
import torch
from mmengine.logging import HistoryBuffer
from mmengine.runner import CheckpointLoader

from mmbcn.checkpoints import CheckpointRefusedError, checkpoint_problem, convert, load_weights_only
from mmbcn.checkpoints import weights_only as checkpoints_module

TRAIN = textwrap.dedent("""
    import copyreg
    import sys
    import torch
    from torch import nn
    from mmengine.logging import HistoryBuffer
    from mmengine.model import BaseModel
    from mmengine.runner import Runner
    from mmbcn import BatchChannelNorm2d
    if sys.argv[2] == 'mmengine':  # MMEngine's own pickling, as without mmbcn (which the
        del copyreg.dispatch_table[HistoryBuffer]  # Runner needs here for torchvision)

    class Tiny(BaseModel):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 8, 3)
            self.norm = BatchChannelNorm2d(8, 2, estimate=True)

        def forward(self, inputs, mode='loss'):
            return dict(loss=self.norm(self.conv(inputs)).square().mean())

    torch.manual_seed(0)
    data = [dict(inputs=torch.randn(3, 8, 8)) for _ in range(4)]
    resume_from = sys.argv[3] if len(sys.argv) > 3 else None  # then train on to iteration 4
    runner = Runner(model=Tiny(), work_dir=sys.argv[1],
                    train_dataloader=dict(dataset=data, sampler=dict(type='DefaultSampler'),
                                          batch_size=2, collate_fn=dict(type='default_collate')),
                    train_cfg=dict(by_epoch=False, max_iters=4 if resume_from else 2),
                    optim_wrapper=dict(optimizer=dict(type='SGD', lr=0.1)),
                    default_hooks=dict(checkpoint=dict(type='CheckpointHook', interval=2,
                                                       by_epoch=False)),
                    load_from=resume_from, resume=bool(resume_from), randomness=dict(seed=0))
    runner.train()
""")


def runner_checkpoint(work_dir, form):
    """Train 2 iterations in a fresh interpreter; the path of the checkpoint it wrote."""
    result = subprocess.run([sys.executable, '-c', TRAIN, str(work_dir), form],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return osp.join(work_dir, 'iter_2.pth')


@pytest.fixture(scope='module')
def checkpoints(tmp_path_factory):
    root = tmp_path_factory.mktemp('checkpoints')
    return {form: runner_checkpoint(root / form, form) for form in ('with-mmbcn', 'mmengine')}


def test_a_checkpoint_written_with_mmbcn_loads_weights_only_everywhere(checkpoints):
    path = checkpoints['with-mmbcn']
    checkpoint = torch.load(path)  # torch's default: weights_only=True
    assert 'norm.running_var' in checkpoint['state_dict']
    buffer = checkpoint['message_hub']['log_scalars']['train/loss']
    assert isinstance(buffer, HistoryBuffer) and len(buffer.data[0]) == 2
    assert buffer.mean() == pytest.approx(float(buffer.data[0].mean()))
    loaded = CheckpointLoader.load_checkpoint(path, map_location='cpu')  # OpenMMLab's loader
    assert torch.equal(loaded['state_dict']['norm.running_mean'],
                       checkpoint['state_dict']['norm.running_mean'])
    with open(path, 'rb') as f:
        assert b'getattr' not in f.read()


def test_without_mmbcn_imported_torch_default_decides(checkpoints):
    """torch >= 2.6 loads weights-only by default and refuses the file without mmbcn's
    allow-list; older torch unpickles everything by default (the file loads, its code runs)."""
    code = (f'import torch\ntry:\n    torch.load({checkpoints["with-mmbcn"]!r})\n'
            f'    print("loaded")\n'
            f'except Exception as error:\n    print(type(error).__name__, error)\n')
    result = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True,
                            timeout=120)
    if inspect.signature(torch.load).parameters['weights_only'].default is False:
        assert result.stdout.strip() == 'loaded', result.stdout + result.stderr
    else:
        assert 'UnpicklingError' in result.stdout and 'HistoryBuffer' in result.stdout


def test_an_mmengine_checkpoint_is_refused_with_the_conversion_command(checkpoints):
    path = checkpoints['mmengine']
    with pytest.raises(pickle.UnpicklingError, match='python -m mmbcn.checkpoints convert'):
        CheckpointLoader.load_checkpoint(path, map_location='cpu')
    assert 'python -m mmbcn.checkpoints convert' in checkpoint_problem(path)


def test_the_conversion_command_rewrites_an_mmengine_checkpoint(checkpoints, tmp_path):
    source, destination = checkpoints['mmengine'], str(tmp_path / 'converted.pth')
    result = subprocess.run([sys.executable, '-m', 'mmbcn.checkpoints', 'convert', source,
                             destination], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    assert 'loads with weights_only=True' in result.stdout
    converted = torch.load(destination)
    original = torch.load(source, weights_only=False)
    assert converted['state_dict'].keys() == original['state_dict'].keys()
    for key, value in original['state_dict'].items():
        assert torch.equal(converted['state_dict'][key], value), key
    for key, buffer in original['message_hub']['log_scalars'].items():
        new = converted['message_hub']['log_scalars'][key]
        assert all((a == b).all() for a, b in zip(new.data, buffer.data, strict=True)), key
    assert converted['meta']['iter'] == original['meta']['iter'] == 2


class _Reaches:
    """Pickles as ``getattr(HistoryBuffer, name)``: what a hostile file could ask for."""

    def __init__(self, name):
        self.name = name

    def __reduce__(self):
        return getattr, (HistoryBuffer, self.name)


@pytest.mark.parametrize('name', ['update', '__init__', '__class__'])
def test_the_conversion_reaches_nothing_but_the_statistics(tmp_path, name):
    source = str(tmp_path / 'hostile.pth')
    torch.save({'state_dict': {}, 'x': _Reaches(name)}, source)
    with pytest.raises(pickle.UnpicklingError, match='only the statistics'):
        convert(source, str(tmp_path / 'out.pth'))
    assert not osp.exists(tmp_path / 'out.pth')


def test_training_resumes_from_a_runner_checkpoint(checkpoints, tmp_path):
    """MMEngine's resume (``load_from`` + ``resume=True``, what ``--resume`` sets) reads the
    checkpoint through mmbcn's loader on this torch and trains on from iteration 2."""
    work_dir = tmp_path / 'resumed'
    result = subprocess.run([sys.executable, '-c', TRAIN, str(work_dir), 'with-mmbcn',
                             checkpoints['with-mmbcn']], capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert 'resumed epoch: 0, iter: 2' in result.stdout + result.stderr
    resumed = load_weights_only(str(work_dir / 'iter_4.pth'))
    assert resumed['meta']['iter'] == 4
    losses = resumed['message_hub']['log_scalars']['train/loss']
    assert len(losses.data[0]) == 4  # the first run's 2 losses came back with the checkpoint


def test_the_restricted_unpickler_loads_runner_checkpoints(checkpoints, monkeypatch):
    """torch < 2.6 has no allow-list mmbcn can extend: its own unpickler loads the same files."""
    monkeypatch.setattr(checkpoints_module, '_registered_with_torch', False)
    loaded = load_weights_only(checkpoints['with-mmbcn'], map_location='cpu')
    reference = torch.load(checkpoints['with-mmbcn'])
    assert loaded['state_dict'].keys() == reference['state_dict'].keys()
    for key, value in reference['state_dict'].items():
        assert torch.equal(loaded['state_dict'][key], value), key
    assert isinstance(loaded['message_hub']['log_scalars']['train/loss'], HistoryBuffer)


@pytest.mark.parametrize('restricted', [False, True], ids=['torch allow-list', 'mmbcn unpickler'])
def test_a_refusal_names_the_class_and_the_command(tmp_path, monkeypatch, restricted):
    if restricted:
        monkeypatch.setattr(checkpoints_module, '_registered_with_torch', False)
    path = str(tmp_path / 'custom.pth')
    torch.save({'state_dict': {'w': torch.ones(2)}, 'meta': {'thing': Fraction(1, 3)}}, path)
    with pytest.raises(CheckpointRefusedError) as refusal:
        load_weights_only(path)
    message = str(refusal.value)
    assert refusal.value.refused == 'fractions.Fraction' and 'fractions.Fraction' in message
    assert f'python -m mmbcn.checkpoints convert --trusted {path}' in message
    assert 'written by MMEngine' not in message


def test_a_hostile_global_is_refused_by_the_restricted_unpickler(tmp_path, monkeypatch):
    monkeypatch.setattr(checkpoints_module, '_registered_with_torch', False)

    class Hostile:
        def __reduce__(self):
            return os.system, ('echo pwned',)

    path = str(tmp_path / 'hostile.pth')
    torch.save({'x': Hostile()}, path)
    with pytest.raises(CheckpointRefusedError, match=r'holds (posix|os)\.system'):
        load_weights_only(path)


def test_the_trusted_conversion_keeps_the_weights_and_names_what_it_leaves_out(tmp_path):
    source, destination = str(tmp_path / 'custom.pth'), str(tmp_path / 'plain.pth')
    meta = {'thing': Fraction(1, 3), 'iter': 4}
    torch.save({'state_dict': {'w': torch.arange(3.0)}, 'meta': meta}, source)
    result = subprocess.run([sys.executable, '-m', 'mmbcn.checkpoints', 'convert', '--trusted',
                             source, destination], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "left out: checkpoint['meta']['thing']" in result.stdout
    converted = load_weights_only(destination)
    assert torch.equal(converted['state_dict']['w'], torch.arange(3.0))
    assert converted['meta'] == {'thing': None, 'iter': 4}


def test_torch_force_no_weights_only_load_is_honoured_with_a_warning(tmp_path, monkeypatch):
    path = str(tmp_path / 'custom.pth')
    torch.save({'meta': {'thing': Fraction(7)}}, path)
    monkeypatch.setenv('TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD', '1')
    checkpoints_module._warned.clear()
    with pytest.warns(UserWarning, match='TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD is set'):
        loaded = load_weights_only(path)
    assert loaded['meta']['thing'] == Fraction(7)
    monkeypatch.setenv('TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD', '0')
    with pytest.raises(CheckpointRefusedError):
        load_weights_only(path)


@pytest.fixture
def registered_statistic():
    """A statistic registered as MMEngine documents it; unregistered afterwards."""
    def doubled_mean(buffer):
        return 2 * buffer.mean()
    HistoryBuffer.register_statistics(doubled_mean)
    yield 'doubled_mean'
    HistoryBuffer._statistics_methods.pop('doubled_mean')


@pytest.mark.parametrize('restricted', [False, True], ids=['torch allow-list', 'mmbcn unpickler'])
def test_registered_statistics_are_kept_by_name(tmp_path, monkeypatch, registered_statistic,
                                                restricted):
    if restricted:
        monkeypatch.setattr(checkpoints_module, '_registered_with_torch', False)
    buffer = HistoryBuffer([1.0, 3.0], [1, 1])
    path = str(tmp_path / 'hub.pth')
    torch.save({'hub': buffer}, path)
    loaded = load_weights_only(path)['hub']
    assert loaded.statistics(registered_statistic) == 4.0
    statistic = HistoryBuffer._statistics_methods.pop(registered_statistic)
    try:  # loaded where the code that registers it was not imported: said, not hidden
        checkpoints_module._warned.clear()
        with pytest.warns(UserWarning, match=registered_statistic):
            again = load_weights_only(path)['hub']
        with pytest.raises(KeyError):
            again.statistics(registered_statistic)
        assert again.mean() == 2.0
    finally:
        HistoryBuffer._statistics_methods[registered_statistic] = statistic
