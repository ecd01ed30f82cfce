"""The API reference's machinery: one directive that documents packages module by module, and
the rules that let the docstrings be shown as they are written.

``{mmbcn-api} mmbcn.analysis mmbcn.checkpoints`` documents each named module, and every module
of each named package, under a heading of its own with ``automodule`` (so a module that is
added, moved or renamed needs no edit here). Each object is documented once, where the highest
package that exports it (``__all__``) is documented; objects of other packages that mmbcn
re-exports are left to their own documentation. A reference to any other name of a documented
object (``mmbcn.layers.BatchChannelNorm2d``, a module named relative to the current one, a
unique short name) resolves to it; a reference to nothing documented stays a warning, which the
build turns into an error.

The docstrings are Google style (napoleon). Two conventions of this project's docstrings that
napoleon would misread are handled here: a ``Returns:`` section or a property docstring that
opens with prose containing a colon (napoleon would take the prose before it for a type), and
``*`` in shapes such as ``(N, C, *)`` (reST would take it for emphasis).
"""

import ast
import importlib
import inspect
import pkgutil
import re

from docutils import nodes
from docutils.statemachine import StringList
from sphinx.ext.napoleon.docstring import GoogleDocstring
from sphinx.util.docutils import SphinxDirective

PACKAGE = 'mmbcn'
_current_module = [None]
_documented = {}  # id(module, class or function) -> documented name
_unimportable = set()  # modules whose optional dependency this build lacks


def module_names(name):
    """``name`` and, for a package, every module below it, in order."""
    module = importlib.import_module(name)
    names = [name]
    if hasattr(module, '__path__'):
        for info in sorted(pkgutil.walk_packages(module.__path__, name + '.'),
                           key=lambda info: info.name):
            names.append(info.name)
    return names


class PackageModules(SphinxDirective):
    """``{mmbcn-api} NAME ...``: a heading and ``automodule`` per module of the named modules."""

    required_arguments = 1
    optional_arguments = 50

    def run(self):
        lines = []
        for name in self.arguments:
            for module in module_names(name):
                lines += [f'## {module}', '']
                try:
                    importlib.import_module(module)
                except ImportError as error:  # an optional dependency this build lacks
                    _unimportable.add(module)
                    lines += [f'`{module}` needs `{error.name}`, which this build lacks; its '
                              'docstrings are not shown here.', '']
                    continue
                lines += ['```{eval-rst}', f'.. automodule:: {module}', '   :members:', '']
                for constant, value in undocumented_constants(module):
                    lines += [f'.. autodata:: {module}.{constant}']
                    if len(repr(value)) > 60:
                        lines += ['   :no-value:']
                    lines += ['']
                lines += ['```', '']
        container = nodes.container()
        self.state.nested_parse(StringList(lines), self.content_offset, container,
                                match_titles=True)
        return container.children


def undocumented_constants(name):
    """Module-level UPPER_CASE names assigned in ``name`` that autodoc leaves out (it shows data
    only with a ``#:`` comment): docstrings refer to them."""
    module = importlib.import_module(name)
    try:
        tree = ast.parse(inspect.getsource(module))
    except (OSError, TypeError):
        return []
    from sphinx.pycode import ModuleAnalyzer
    commented = {attr for _, attr in ModuleAnalyzer.for_module(name).find_attr_docs()}
    names = []
    for node in tree.body:
        targets = (node.targets if isinstance(node, ast.Assign)
                   else [node.target] if isinstance(node, ast.AnnAssign) else [])
        for target in targets:
            if (isinstance(target, ast.Name) and re.fullmatch(r'[A-Z][A-Z0-9_]*', target.id)
                    and target.id not in commented and target.id not in names):
                names.append(target.id)
    return [(constant, getattr(module, constant)) for constant in names
            if hasattr(module, constant)]


def documented_in(obj, name):
    """The module where ``obj`` (exported as ``name``) is documented: the highest package above
    its defining module that exports it, else that module."""
    defined_in = getattr(obj, '__module__', None) or ''
    parts = defined_in.split('.')
    for depth in range(1, len(parts)):
        package = importlib.import_module('.'.join(parts[:depth]))
        if name in getattr(package, '__all__', ()) and getattr(package, name, None) is obj:
            return package.__name__
    return defined_in


def skip_member(app, what, name, obj, skip, options):
    if what == 'class' and (getattr(obj, '__doc__', None) or '').startswith('Alias for field'):
        return True  # a NamedTuple field without a docstring of its own
    module = _current_module[0]
    if what != 'module' or module is None or skip:
        return None
    if not (isinstance(obj, type) or callable(obj)):
        return None  # data: documented where it is found
    if not getattr(obj, '__module__', '').startswith(PACKAGE):
        return True  # another package's object, re-exported: its own documentation has it
    if documented_in(obj, name) != module:
        return True  # documented once, elsewhere
    return None


def record(app, what, name, obj, options, lines):
    if what == 'module':
        _current_module[0] = name
    if what == 'data' and lines and inspect.getdoc(obj) == inspect.getdoc(type(obj)):
        lines[:] = []  # an undocumented constant: not its type's docstring
    if what in ('module', 'class', 'exception', 'function'):
        _documented.setdefault(id(obj), name)
    escape_stray_asterisks(lines)


def import_dotted(name):
    parts = name.split('.')
    for cut in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module('.'.join(parts[:cut]))
        except Exception:
            continue
        try:
            for part in parts[cut:]:
                obj = getattr(obj, part)
        except AttributeError:
            return None
        return obj
    return None


def resolve_alias(app, env, node, contnode):
    """Resolve a Python reference to another name of a documented object."""
    if node.get('refdomain') != 'py':
        return None
    domain = env.get_domain('py')
    target = node['reftarget'].lstrip('.~')
    module = node.get('py:module')
    candidates = [target] + ([f'{module}.{target}'] if module else [])
    if module:  # a sibling module named relatively (``triton_backend.X`` in ``mmbcn.ops.y``)
        candidates.append(module.rsplit('.', 1)[0] + '.' + target)
    for candidate in candidates:
        if any(candidate == name or candidate.startswith(name + '.') for name in _unimportable):
            return contnode  # not importable in this build: shown as text
    for candidate in candidates:
        if not candidate.startswith(PACKAGE):
            continue
        obj = import_dotted(candidate)
        if obj is not None and id(obj) in _documented:
            return domain.resolve_xref(env, node['refdoc'], app.builder, 'obj',
                                       _documented[id(obj)], node, contnode)
    # An attribute that exists but has no docstring of its own: shown as text.
    cls = node.get('py:class')
    if node['reftype'] in ('attr', 'data') and module and cls:
        if import_dotted(f'{module}.{cls}.{target}') is not None:
            return contnode
    # A unique documented name ending with the target (constants, functions of a sibling).
    suffix = '.' + target
    matches = [full for full in domain.objects if full.endswith(suffix)]
    if len(matches) == 1:
        return domain.resolve_xref(env, node['refdoc'], app.builder, 'obj', matches[0], node,
                                   contnode)
    return None


# reST inline markup in a line: literals, roles and interpreted text, emphasis, strong.
_MARKUP = re.compile(r'(``.+?``|:\w+:`[^`]+`|`[^`]+`_?|(?<![\w\\])\*\*\S(?:.*?\S)?\*\*(?!\w)'
                     r'|(?<![\w*\\])\*[^\s*](?:[^*]*?[^\s*\\])?\*(?![\w*]))')


def escape_stray_asterisks(lines):
    """Escape every ``*`` and ``|`` that is not reST markup (bullets, inline markup), outside
    literal blocks: shapes such as ``(N, C, *)`` and norms such as ``|mean|``."""
    literal_indent = None
    for i, line in enumerate(lines):
        indent = len(line) - len(line.lstrip())
        if literal_indent is not None:
            if not line.strip() or indent > literal_indent:
                continue
            literal_indent = None
        if line.rstrip().endswith('::'):
            literal_indent = indent
        if '*' not in line and '|' not in line:
            continue
        bullet = re.match(r'\s*(?:[*+-]|\d+\.)\s+', line)
        head, body = (line[:bullet.end()], line[bullet.end():]) if bullet else ('', line)
        pieces = _MARKUP.split(body)
        lines[i] = head + ''.join(piece if j % 2 else re.sub(r'(?<!\\)([*|])', r'\\\1', piece)
                                  for j, piece in enumerate(pieces))


def prose_is_not_a_type(text):
    """Whether napoleon's "type" is prose that held a colon (or a literal cut at one)."""
    text = text.strip()
    return (' ' in text or '`' in text) and not re.fullmatch(r'(`+)[^`\s]+\1', text)


_consume_returns = GoogleDocstring._consume_returns_section
_consume_attribute = GoogleDocstring._consume_inline_attribute


def _consume_returns_section(self, preprocess_types=False):
    fields = []
    for name, type_, desc in _consume_returns(self, preprocess_types):
        if type_ and prose_is_not_a_type(type_):
            first = desc[0] if desc else ''
            desc = [f'{type_}: {first}'.rstrip()] + list(desc[1:])
            type_ = ''
        fields.append((name, type_, desc))
    return fields


def _consume_inline_attribute(self):
    type_, desc = _consume_attribute(self)
    if type_ and prose_is_not_a_type(type_):
        first = desc[0] if desc else ''
        return '', [f'{type_}: {first}'.rstrip()] + list(desc[1:])
    return type_, desc


def setup(app):
    GoogleDocstring._consume_returns_section = _consume_returns_section
    GoogleDocstring._consume_inline_attribute = _consume_inline_attribute
    app.add_directive('mmbcn-api', PackageModules)
    app.connect('autodoc-skip-member', skip_member)
    app.connect('autodoc-process-docstring', record, priority=600)  # after napoleon (500)
    app.connect('missing-reference', resolve_alias)
    return {'parallel_read_safe': False, 'parallel_write_safe': True}
