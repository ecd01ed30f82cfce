"""The configs shipped with mmbcn, found the same way in a wheel and in a checkout.

They live in ``mmbcn/.mim/configs``, where mmdet and mmseg keep theirs and where openmim
(``mim train mmbcn CONFIG``) looks: a wheel (``pip install .``) carries a copy of them there; in
a checkout (so in an editable install, ``pip install -e .``) it is a link to the checkout's
``configs/``, and the checkout's ``configs/`` is used directly where links did not survive
(a checkout without symbolic links).

MMEngine's ``pkg::path`` prefix only knows a fixed list of OpenMMLab packages, so another
project inherits mmbcn's configs by a relative ``_base_`` through a link to them::

    python -m mmbcn.utils.config_files link configs/mmbcn      # once, in the other project
    # configs/my_model.py:
    _base_ = './mmbcn/mask_rcnn/mask-rcnn_r50_fpn_bcn-ws_8xb2-1x_coco.py'

``python -m mmbcn.utils.config_files path`` prints the folder. The tools take a config by its
path or by its name among these (:func:`resolve_config`), and run it in the codebase its
``default_scope`` names (:func:`config_scope`, :func:`build_model`).
"""

import argparse
import os
import os.path as osp

PACKAGE = osp.dirname(osp.dirname(osp.abspath(__file__)))  # mmbcn/
PACKAGED = osp.join(PACKAGE, '.mim', 'configs')
CHECKOUT = osp.join(osp.dirname(PACKAGE), 'configs')
SCOPES = ('mmdet', 'mmseg', 'mmpretrain')  # the codebases whose configs the tools run


def config_dir() -> str:
    """The folder holding mmbcn's configs (``mask_rcnn/``, ``deeplabv3/``, ``demo/``).

    In a checkout, the folder the ``.mim/configs`` link points to: the checkout's ``configs/``.
    """
    for folder in (PACKAGED, CHECKOUT):
        if osp.isdir(folder):
            return osp.realpath(folder) if osp.islink(folder) else folder
    raise FileNotFoundError(
        f'mmbcn has no configs next to it (looked in {PACKAGED} and {CHECKOUT}); reinstall it '
        f'with `pip install .` from a checkout, which packs them into the wheel.')


def config_path(name: str) -> str:
    """The path of config ``name``, relative to :func:`config_dir` (e.g. ``demo/x.py``)."""
    path = osp.join(config_dir(), name)
    if not osp.isfile(path):
        raise FileNotFoundError(f'mmbcn ships no config {name!r} (looked in {config_dir()}).')
    return path


def config_scope(cfg) -> str:
    """The codebase a loaded config runs in: its ``default_scope``, one of :data:`SCOPES`."""
    scope = cfg.get('default_scope')
    if scope not in SCOPES:
        raise ValueError(f'The config sets default_scope={scope!r}; mmbcn tools run configs of '
                         f'{SCOPES}. Inherit from an mmdet::, mmseg:: or mmpretrain:: config.')
    return scope


def build_model(cfg):
    """The config's model, built by the registry of its codebase (:func:`config_scope`) after
    importing the config's ``custom_imports`` and making that codebase the default scope, as
    MMEngine's ``Runner`` does."""
    import importlib

    from mmengine.registry import init_default_scope
    from mmengine.utils import import_modules_from_strings

    scope = config_scope(cfg)
    imports = cfg.get('custom_imports')
    if imports:
        import_modules_from_strings(**imports)
    init_default_scope(scope)
    return importlib.import_module(f'{scope}.registry').MODELS.build(cfg.model)


def resolve_config(path: str) -> str:
    """``path`` itself when it exists, else the config of that name shipped with mmbcn.

    So ``tools/train.py demo/mask-rcnn_r18_fpn_bcn-ws_2xb2-demo-shapes.py`` works from anywhere,
    with mmbcn installed from a wheel too (:func:`config_dir`).
    """
    if osp.isfile(path):
        return path
    for prefix in ('', 'configs/'):
        if path.startswith(prefix):
            try:
                return config_path(path[len(prefix):])
            except FileNotFoundError:
                pass
    raise FileNotFoundError(f'No config {path!r}: neither a file nor one of the configs shipped '
                            f'with mmbcn (in {config_dir()}).')


def link(destination: str) -> str:
    """Make ``destination`` a symbolic link to :func:`config_dir`; return the folder linked."""
    source = config_dir()
    if osp.lexists(destination):
        if osp.islink(destination) and osp.realpath(destination) == osp.realpath(source):
            return source
        raise FileExistsError(f'{destination} exists; remove it or choose another path.')
    parent = osp.dirname(osp.abspath(destination))
    os.makedirs(parent, exist_ok=True)
    os.symlink(source, destination, target_is_directory=True)
    return source


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog='python -m mmbcn.utils.config_files',
                                     description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest='command', required=True)
    commands.add_parser('path', help='print the folder of the configs')
    linker = commands.add_parser('link', help='link DESTINATION to the folder of the configs')
    linker.add_argument('destination')
    args = parser.parse_args(argv)
    if args.command == 'path':
        print(config_dir())
    else:
        print(f'{args.destination} -> {link(args.destination)}')


if __name__ == '__main__':
    main()
