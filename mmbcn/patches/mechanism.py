"""How mmbcn changes other packages: declared patches, applied all-or-nothing, each reported.

A patch states the upstream package, the dotted target (``module:attribute.path``), the
versions it was checked against and what it does (:class:`Patch`). Two kinds:

* :class:`FunctionPatch` replaces a function (or method, or classmethod) by one built from the
  original, after checking that the target exists and has the parameters it was checked with.
  The replacement, and every other name bound to the same function (``also_at``), are assigned
  together, or none is. Applying twice changes nothing (the replacement carries the patch's
  name). A patch on a module mmbcn does not import (mmpretrain's) is applied right after that
  module is first imported.
* :class:`RegistrationPatch` registers something through an upstream API (an allow-list, a
  loader, a pickling rule, an import hook) when its ``available`` check passes.

A patch that cannot be applied is *skipped* with its reason, never an import error. The entry
points a skipped function patch guarded then refuse the models it would get wrong: each of its
``guards`` (the entry points users call) raises :class:`UnpatchedUpstreamError` naming the patch
when an argument holds a layer its :class:`Refusal` names (mmbcn's patches: BCN or WSConv2d,
:mod:`.declared`), instead of a silent wrong result; this module knows no layer itself.
:func:`patch_states` says what happened to each (``python -m mmbcn.collect_env`` prints it).
"""

import functools
import importlib
import importlib.abc
import importlib.util
import inspect
import sys
from typing import Any, Callable, Dict, List, NamedTuple, Optional, Sequence, Tuple

from torch import nn

from .errors import UnpatchedUpstreamError

__all__ = ['FunctionPatch', 'Patch', 'PatchState', 'Refusal', 'RegistrationPatch',
           'apply_patches', 'patch_states']

APPLIED, SKIPPED, WAITING = 'applied', 'skipped', 'waiting'


class PatchState(NamedTuple):
    """What happened to a patch: ``status`` is applied, skipped or waiting (for its module's
    import), with the reason for the last two."""
    patch: 'Patch'
    status: str
    reason: str = ''


class Patch:
    """One change to another package.

    Args:
        package: the upstream distribution (``mmcv``, ``torch``, ...).
        target: what is changed, ``module:attribute.path``.
        checked: the versions it was checked against (``'mmcv 2.1.0'``).
        does: what mmbcn does there instead, in a sentence.
    """

    def __init__(self, package: str, target: str, checked: str, does: str):
        self.package, self.target, self.checked, self.does = package, target, checked, does

    @property
    def module_name(self) -> str:
        return self.target.split(':')[0]

    def apply(self) -> PatchState:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f'{type(self).__name__}({self.target!r})'


def _resolve(target: str) -> Tuple[Any, str, Any]:
    """(owner, attribute name, raw attribute) of ``module:a.b.c``; raises ImportError or
    AttributeError when a part is missing."""
    module_name, _, path = target.partition(':')
    owner = importlib.import_module(module_name)
    *parents, name = path.split('.')
    for parent in parents:
        owner = getattr(owner, parent)
    raw = owner.__dict__[name] if name in getattr(owner, '__dict__', {}) else getattr(owner, name)
    return owner, name, raw


def _function_of(raw: Any) -> Callable:
    return raw.__func__ if isinstance(raw, (classmethod, staticmethod)) else raw


class Refusal(NamedTuple):
    """What the guards of a skipped :class:`FunctionPatch` refuse."""

    layer_names: Callable[[nn.Module], List[str]]  #: names of such layers in a module ('': itself)
    what: str  #: how the error names them, e.g. 'BCN or WSConv2d'


class FunctionPatch(Patch):
    """Replaces the function at ``target`` by ``replace(original)``.

    Args:
        parameters: the target's parameter names as checked; a target with others is skipped.
        replace: builds the replacement from the original function.
        also_at: other ``module:attribute`` names bound to the same function, replaced too.
        guards: entry points (``module:attribute``) that refuse, when this patch is skipped,
            the models ``refuses`` names layers of.
        refuses: which layers the guards refuse (needed with ``guards``).
        absent: for a target only one OpenMMLab family has (:mod:`mmbcn.openmmlab_family`): why
            nothing needs patching where it is missing (the skip's reason).
    """

    def __init__(self, package: str, target: str, checked: str, does: str,
                 parameters: Sequence[str], replace: Callable[[Callable], Callable],
                 also_at: Sequence[str] = (), guards: Sequence[str] = (),
                 refuses: Optional['Refusal'] = None, absent: Optional[str] = None):
        super().__init__(package, target, checked, does)
        if guards and refuses is None:
            raise ValueError(f'{target}: guards need a Refusal (refuses=...) saying what they '
                             f'refuse.')
        self.refuses = refuses
        self.parameters, self.replace = tuple(parameters), replace
        self.also_at, self.guards, self.absent = tuple(also_at), tuple(guards), absent

    def problem(self) -> Optional[str]:
        """Why the patch cannot be applied, or None."""
        try:
            _, _, raw = _resolve(self.target)
        except (ImportError, AttributeError, KeyError) as error:
            if self.absent is not None:
                return f'{self.target} is missing: {self.absent}'
            return f'{self.target} is missing ({type(error).__name__}: {error})'
        function = _function_of(raw)
        if getattr(function, '__mmbcn_patch__', None) == self.target:
            return None
        try:
            found = tuple(inspect.signature(function).parameters)
        except (TypeError, ValueError):
            return f'{self.target} has no signature to check'
        if found != self.parameters:
            return (f'{self.target} takes {found}, not the {self.parameters} it was checked '
                    f'with ({self.checked})')
        return None

    def apply(self) -> PatchState:
        reason = self.problem()
        if reason is not None:
            self._guard(reason)
            return PatchState(self, SKIPPED, reason)
        owner, name, raw = _resolve(self.target)
        original = _function_of(raw)
        if getattr(original, '__mmbcn_patch__', None) == self.target:
            return PatchState(self, APPLIED)
        replacement = functools.wraps(original)(self.replace(original))
        replacement.__mmbcn_patch__ = self.target
        bound = [(owner, name, type(raw)(replacement)
                  if isinstance(raw, (classmethod, staticmethod)) else replacement)]
        for alias in self.also_at:
            try:
                alias_owner, alias_name, alias_raw = _resolve(alias)
            except (ImportError, AttributeError, KeyError):
                continue
            if _function_of(alias_raw) is original:
                bound.append((alias_owner, alias_name, replacement))
        for where, attribute, value in bound:  # all resolved first: assigned together
            setattr(where, attribute, value)
        return PatchState(self, APPLIED)

    def _guard(self, reason: str) -> None:
        """Make each guard refuse models holding BCN or WSConv2d, naming this patch."""
        for entry in self.guards:
            try:
                owner, name, raw = _resolve(entry)
            except (ImportError, AttributeError, KeyError):
                continue  # the entry point itself is gone: nothing calls the old code
            function = _function_of(raw)
            if getattr(function, '__mmbcn_guard__', None) == self.target:
                continue
            guarded = _refusing(function, entry, self, reason)
            setattr(owner, name, type(raw)(guarded)
                    if isinstance(raw, (classmethod, staticmethod)) else guarded)


def _refusing(function: Callable, entry: str, patch: 'FunctionPatch', reason: str) -> Callable:
    @functools.wraps(function)
    def guarded(*args, **kwargs):
        for value in (*args, *kwargs.values()):
            names = patch.refuses.layer_names(value) if isinstance(value, nn.Module) else []
            if names:
                where = names[0] or type(value).__name__
                raise UnpatchedUpstreamError(
                    f'{entry} would treat {patch.refuses.what} ({where!r}) as BatchNorm or a '
                    f'plain conv: mmbcn\'s patch of {patch.target} (checked with {patch.checked}) '
                    f'was not applied on this stack because {reason}. Use a stack mmbcn '
                    f'supports (python -m mmbcn.collect_env) or leave this step out.')
        return function(*args, **kwargs)

    guarded.__mmbcn_guard__ = patch.target
    return guarded


class RegistrationPatch(Patch):
    """Registers something through an upstream API.

    Args:
        available: None when the upstream API is there, else why not.
        register: does the registration (idempotent).
    """

    def __init__(self, package: str, target: str, checked: str, does: str,
                 available: Callable[[], Optional[str]], register: Callable[[], None]):
        super().__init__(package, target, checked, does)
        self.available, self.register = available, register

    def apply(self) -> PatchState:
        reason = self.available()
        if reason is not None:
            return PatchState(self, SKIPPED, reason)
        self.register()
        return PatchState(self, APPLIED)


_states: Dict[str, PatchState] = {}


class _AfterImport(importlib.abc.MetaPathFinder):
    """Applies the patches of a module right after it is first executed."""

    def __init__(self, waiting: Dict[str, List[Patch]]):
        self.waiting = waiting

    def find_spec(self, fullname, path, target=None):
        if fullname not in self.waiting:
            return None
        sys.meta_path.remove(self)
        try:
            spec = importlib.util.find_spec(fullname)
        finally:
            sys.meta_path.insert(0, self)
        if spec is None or spec.loader is None:
            return None
        patches, execute = self.waiting.pop(fullname), spec.loader.exec_module
        if not self.waiting:
            sys.meta_path.remove(self)

        def exec_module(module):
            execute(module)
            for patch in patches:
                _states[patch.target] = patch.apply()

        spec.loader.exec_module = exec_module
        return spec


def apply_patches(patches: Sequence[Patch], after_import: Sequence[str] = ()) -> None:
    """Apply ``patches`` in order; those on a module named in ``after_import`` that is not
    imported yet wait for its import. Idempotent."""
    waiting: Dict[str, List[Patch]] = {}
    for patch in patches:
        state = _states.get(patch.target)
        if state is not None and state.status != SKIPPED:
            continue
        if patch.module_name in after_import and patch.module_name not in sys.modules:
            waiting.setdefault(patch.module_name, []).append(patch)
            _states[patch.target] = PatchState(
                patch, WAITING, f'applied when {patch.module_name} is imported')
        else:
            _states[patch.target] = patch.apply()
    if waiting:
        sys.meta_path.insert(0, _AfterImport(waiting))


def patch_states() -> List[PatchState]:
    """The state of every patch applied so far, in order."""
    return list(_states.values())
