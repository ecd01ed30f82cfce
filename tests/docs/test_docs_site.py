"""The documentation: the site builds with warnings as errors, a renamed heading or page breaks
the build, the README's links resolve, and every shell command the README, the docs and the
configs' READMEs show is run by a test (the same string) or needs what a test machine lacks.

Shell commands are the lines of fenced ``bash`` blocks (comments stripped, ``\\`` continuations
joined). A command passes when it is one of ``RUN_HERE`` (run below), when the same string
appears in a file under ``tests/``, or when one of the ``NEEDS`` rules says why no test runs it
here (GPUs, data sets, a cluster, minutes of CPU, a user's own files).
"""

import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / 'docs' / 'en'
# The Makefile's `docs` recipe without its output folder: the test builds into a tmp dir.
SPHINX_OPTIONS = '-m sphinx -E -W --keep-going -b html'
MAKE_DOCS = f'$(PYTHON) {SPHINX_OPTIONS} docs/en docs/_build/html'

# Commands of the docs that this file runs itself, in a tmp dir (see the tests below).
LINK_CONFIGS = 'python -m mmbcn.utils.config_files link configs/mmbcn'
CONVERT_CHECKPOINT = 'python -m mmbcn.checkpoints convert old.pth new.pth'
COLLECT_ENV = 'python -m mmbcn.collect_env'
RUN_HERE = {LINK_CONFIGS, CONVERT_CHECKPOINT, COLLECT_ENV}

# Why a command is not run by a test here: (pattern, reason). The first rule that matches counts.
NEEDS = [
    (r'^make docs$', 'this file runs its recipe (checked against the Makefile)'),
    (r'^make setup$', 'installs the environment (about 20 minutes the first time); CI runs it '
                      'through make test'),
    (r'^make test$', 'the whole test suite: CI runs exactly this'),
    (r'^make test-(torch|onedl)', 'builds an environment with another stack '
                                  '(tools/setup_stack.sh, minutes) and runs the stacks\' subset '
                                  'of the tests there'),
    (r'^make demo$|tools/demo\.py', 'about 4 minutes of CPU; tests/toolbox/test_entry_points.py '
                                    'trains the three demo configs for a few iterations'),
    (r'^make study', '11-14 minutes of CPU; tests/study/test_norm_study.py runs the study tool '
                     'for a few iterations'),
    (r'^make bench$|benchmarks/', 'minutes of CPU, or a GPU; tests/tools/test_benchmarks.py runs '
                                  'the benchmark scripts in small'),
    (r'--device cuda', 'needs a CUDA GPU'),
    (r'slurm_train\.sh|sbatch|--launcher slurm', 'needs a Slurm cluster; '
                                                 'tests/commands/test_restarts.py and '
                                                 'tests/tools/test_mim.py run the scripts against '
                                                 'a stand-in srun'),
    (r'_coco\.py|voc12aug|_in1k\.py', 'needs COCO, VOC or ImageNet and GPUs; '
                                      'tests/tools/test_configs.py builds every config'),
    (r'rn50_bcn_ws\.pth|resnet50_gn_ws\.pth', "needs the authors' released weights; "
                                              'tests/checkpoints/test_authors.py converts '
                                              'checkpoints written in their layouts'),
    (r'(^|/)mim |pip wheel|pip install', 'builds and installs mmbcn as a wheel (minutes): mim '
                                         'does not see an editable install; '
                                         'tests/tools/test_mim.py does this'),
    (r'write_startup_file', "writes into the environment's site-packages: make setup runs this "
                            'exact line (tools/setup_env.sh); '
                            'tests/test_torchvision_compat.py tests the file'),
    (r'\b(CONFIG|CHECKPOINT|YOUR_CONFIG|PARTITION|JOB_NAME|IN|OUT)\b',
     "a template: the words in capitals stand for the user's own files"),
]


def markdown_files():
    return ([ROOT / 'README.md'] + sorted(DOCS.rglob('*.md'))
            + sorted((ROOT / 'configs').glob('*/README.md')))


def fenced_blocks(text):
    """(info string, body) of every fenced code block."""
    return re.findall(r'^(?:```|~~~)(\S*)[^\n]*\n(.*?)^(?:```|~~~)\s*$', text, re.M | re.S)


def shell_commands(body):
    """The commands of a bash block: comments stripped, continuations joined, spaces collapsed."""
    lines = []
    for line in body.splitlines():
        line = re.sub(r'(^|\s)#.*$', '', line).rstrip()
        if lines and lines[-1].endswith('\\'):
            lines[-1] = lines[-1][:-1] + ' ' + line.strip()
        elif line.strip():
            lines.append(line.strip())
    return [' '.join(line.split()) for line in lines]


def documented_commands():
    commands = {}
    for path in markdown_files():
        for info, body in fenced_blocks(path.read_text()):
            if info == 'bash':
                for command in shell_commands(body):
                    commands.setdefault(command, path.relative_to(ROOT))
    return commands


def test_the_command_parser_joins_continuations_and_strips_comments():
    body = textwrap.dedent("""\
        # a comment line
        tools/dist_test.sh  CONFIG \\
            CKPT 8   # trailing comment
        make study-rate   # = tools/norm_study.py \\
                          #     --norms a
        """)
    assert shell_commands(body) == ['tools/dist_test.sh CONFIG CKPT 8', 'make study-rate']


def test_every_shell_block_is_marked_bash():
    """Commands in ``sh``/``shell``/``console`` blocks would escape the check below."""
    for path in markdown_files():
        infos = {info for info, _ in fenced_blocks(path.read_text())}
        assert not infos & {'sh', 'shell', 'console', 'zsh', ''}, (path, infos)


def test_every_documented_command_is_tested_or_says_why_not():
    commands = documented_commands()
    assert LINK_CONFIGS in commands and 'make test' in commands  # the parser found them
    test_sources = ' '.join(
        ' '.join(path.read_text().split()) for path in (ROOT / 'tests').rglob('*.py')
        if path.resolve() != Path(__file__).resolve())
    unchecked = []
    for command, where in sorted(commands.items()):
        if command in RUN_HERE or command in test_sources:
            continue
        if not any(re.search(pattern, command) for pattern, _ in NEEDS):
            unchecked.append(f'{where}: {command}')
    assert not unchecked, ('commands no test runs and no NEEDS rule explains:\n'
                           + '\n'.join(unchecked))


def test_the_reasons_name_files_that_exist():
    setup = (ROOT / 'tools' / 'setup_env.sh').read_text()
    assert "from mmbcn.torchvision_compat import write_startup_file" in setup
    for _, reason in NEEDS:
        for path in re.findall(r'(?:tests|tools)/[\w/]+\.(?:py|sh)', reason):
            assert (ROOT / path).exists(), path


def sphinx_build(source, out, *options):
    return subprocess.run([sys.executable, *SPHINX_OPTIONS.split(), '-q', *options,
                           str(source), str(out)], cwd=ROOT, capture_output=True, text=True,
                          timeout=900)


def test_the_makefile_builds_the_docs_as_this_file_does():
    assert MAKE_DOCS in (ROOT / 'Makefile').read_text()
    assert re.search(r'^test: .*\bdocs\b', (ROOT / 'Makefile').read_text(), re.M)


def test_the_site_builds_with_warnings_as_errors(tmp_path):
    result = sphinx_build(DOCS, tmp_path)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-6000:]
    assert 'Batch-Channel Normalization' in (tmp_path / 'index.html').read_text()
    # The API reference is generated from the docstrings, the maths included.
    api = (tmp_path / 'api' / 'index.html').read_text()
    assert 'mmbcn.BatchChannelNorm2d' in api and 'mmbcn.BCNUpdateRateHook' in api
    assert 'EstBN' in (tmp_path / 'api' / 'ops.html').read_text()
    # The configs' READMEs are pages of the site.
    assert '78.10' in (tmp_path / 'model_zoo' / 'deeplabv3.html').read_text()


def test_a_renamed_heading_or_page_breaks_the_build(tmp_path):
    # A copy of docs/en at the same depth, beside the package (its version) and the configs it
    # includes. Its API pages are stubs and references to the API are not checked (the build
    # above does both), so every warning it gives comes from the two renames below.
    source = tmp_path / 'docs' / 'en'
    shutil.copytree(DOCS, source, ignore=shutil.ignore_patterns('_build'))
    for name in ('mmbcn', 'configs'):
        (tmp_path / name).symlink_to(ROOT / name)
    for page in (source / 'api').glob('*.md'):
        page.write_text(page.read_text().split('\n', 1)[0] + '\n\n' + ''.join(
            re.findall(r'```\{toctree\}.*?```\n', page.read_text(), re.S)))
    guide = source / 'user_guides' / 'train.md'
    heading = '## Which BCN mode a config uses'
    assert heading in guide.read_text()
    assert 'train.md#which-bcn-mode-a-config-uses' in (source / 'notes' / 'faq.md').read_text()
    guide.write_text(guide.read_text().replace(heading, '## BCN modes'))
    (source / 'elimination' / 'study.md').rename(source / 'elimination' / 'norm_study.md')

    broken = sphinx_build(source, tmp_path / 'broken', '-D', 'nitpicky=0')
    output = broken.stdout + broken.stderr
    assert broken.returncode != 0
    assert 'which-bcn-mode-a-config-uses' in output, output[-4000:]
    assert re.search(r'elimination/study\b', output), output[-4000:]
    warnings = [line for line in output.splitlines() if 'WARNING' in line or 'ERROR' in line]
    assert warnings and all(re.search(r'which-bcn-mode|elimination/study|study\.md', line)
                            for line in warnings), warnings


def github_anchor(heading):
    return re.sub(r'[^\w\- ]', '', heading.strip().lower()).replace(' ', '-')


def test_the_readmes_link_to_files_and_headings_that_exist():
    for readme in [ROOT / 'README.md'] + sorted((ROOT / 'configs').glob('*/README.md')):
        for target in re.findall(r'\]\(([^)\s]+)\)', readme.read_text()):
            if re.match(r'[a-z]+://', target):
                continue
            path, _, anchor = target.partition('#')
            linked = (readme.parent / path).resolve() if path else readme
            assert linked.exists(), f'{readme.relative_to(ROOT)}: {target}'
            if anchor:
                headings = re.findall(r'^#+ (.+)$', linked.read_text(), re.M)
                assert anchor in {github_anchor(h) for h in headings}, target


def test_every_config_folder_readme_is_a_page_of_the_site():
    for readme in (ROOT / 'configs').glob('*/README.md'):
        page = DOCS / 'model_zoo' / f'{readme.parent.name}.md'
        assert page.exists(), f'{readme.relative_to(ROOT)} has no page in docs/en/model_zoo'
        assert f'configs/{readme.parent.name}/README.md' in page.read_text()
        assert readme.parent.name in (DOCS / 'model_zoo' / 'index.md').read_text()


def test_the_readme_is_a_front_page():
    readme = (ROOT / 'README.md').read_text()
    assert len(readme.splitlines()) <= 250
    for section in ('## Install', '## Quick start', '## BCN + WS in a config', '## Documentation',
                    '## Citation'):
        assert section in readme


def run_documented(command, cwd):
    """Run a documented ``python ...`` command with this interpreter, from ``cwd``."""
    assert command.startswith('python ')
    env = {**os.environ, 'PYTHONPATH': str(ROOT)}
    return subprocess.run([sys.executable, *command.split()[1:]], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


def test_the_config_link_command_gives_another_project_the_configs(tmp_path):
    result = run_documented(LINK_CONFIGS, tmp_path)
    assert result.returncode == 0, result.stderr
    link = tmp_path / 'configs' / 'mmbcn'
    assert (link / 'mask_rcnn' / 'mask-rcnn_r50_fpn_bcn-ws_8xb2-1x_coco.py').is_file()


def test_the_environment_report_names_the_stack(tmp_path):
    result = run_documented(COLLECT_ENV, tmp_path)
    assert result.returncode == 0, result.stderr
    assert 'torch' in result.stdout and 'mmcv' in result.stdout and 'mmbcn' in result.stdout


def test_the_checkpoint_conversion_command_makes_an_old_checkpoint_load(tmp_path):
    # A checkpoint as MMEngine writes it without mmbcn imported: a message hub of HistoryBuffers.
    write_old = textwrap.dedent("""
        import torch
        from mmengine.logging import HistoryBuffer
        loss = HistoryBuffer()
        loss.update(1.0)
        torch.save({'state_dict': {'w': torch.ones(2)},
                    'message_hub': {'log_scalars': {'loss': loss}}}, 'old.pth')
        """)
    subprocess.run([sys.executable, '-c', write_old], cwd=tmp_path, check=True, timeout=300)
    from mmbcn.checkpoints import checkpoint_problem
    assert checkpoint_problem(str(tmp_path / 'old.pth'))  # refused as it is

    result = run_documented(CONVERT_CHECKPOINT, tmp_path)
    assert result.returncode == 0, result.stderr
    assert checkpoint_problem(str(tmp_path / 'new.pth')) is None
    new = torch.load(tmp_path / 'new.pth', weights_only=True)
    torch.testing.assert_close(new['state_dict']['w'], torch.ones(2))


if __name__ == '__main__':
    sys.exit(pytest.main([__file__, '-q']))


REGISTERED_BY_IMPORT = """
import json
from mmengine import registry
import mmbcn
names = [(reg, name) for reg in ('MODELS', 'HOOKS', 'WEIGHT_INITIALIZERS',
                                 'OPTIM_WRAPPER_CONSTRUCTORS', 'DATASETS')
         for name, cls in getattr(registry, reg).module_dict.items()
         if getattr(cls, '__module__', '').startswith('mmbcn.')]
print(json.dumps(names))
"""


def test_the_registered_names_table_is_what_import_mmbcn_registers():
    """The one place that says what registers what (Installation, "Registered names") lists
    every mmbcn class that ``import mmbcn`` alone puts in MMEngine's root registries (a fresh
    interpreter: other tests import modules that register more), and nothing else."""
    import json
    page = (DOCS / 'get_started' / 'installation.md').read_text()
    section = page.split('## Registered names', 1)[1]
    table = re.search(r'^\|.*?(?=\n\n)', section, re.M | re.S).group(0)
    rows = re.findall(r"^\| `(\w+)` \| (.+?) \|", table, re.M)
    documented = {(reg, name) for reg, names in rows for name in re.findall(r"'(\w+)'", names)}
    assert documented, table
    result = subprocess.run([sys.executable, '-c', REGISTERED_BY_IMPORT], capture_output=True,
                            text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    registered = {tuple(pair) for pair in json.loads(result.stdout.splitlines()[-1])}
    assert documented == registered
