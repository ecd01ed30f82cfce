"""Sphinx configuration of mmbcn's documentation (Markdown pages through MyST).

Build it with `make docs` (warnings are errors, every internal link and heading anchor is
checked); `tests/docs/test_docs_site.py` builds it the same way.
"""

import os
import re
import sys

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), '..', '..'))
sys.path.insert(0, ROOT)  # the checkout's mmbcn, also without an install
sys.path.insert(0, os.path.join(os.path.dirname(__file__), '_ext'))

with open(os.path.join(ROOT, 'mmbcn', 'version.py')) as f:  # the one version string
    __version__ = re.search(r"__version__ = '([^']+)'", f.read()).group(1)

project = 'mmbcn'
author = 'mmbcn contributors'
copyright = '2026, mmbcn contributors'
version = release = __version__

extensions = [
    'myst_parser',  # Markdown pages
    'sphinx.ext.autodoc',  # the API reference from the docstrings
    'sphinx.ext.napoleon',  # Google-style docstrings
    'sphinx.ext.mathjax',  # the maths in pages and docstrings
    'mmbcn_api',  # the API pages, module by module (_ext/mmbcn_api.py)
]

source_suffix = {'.md': 'markdown'}
root_doc = 'index'
exclude_patterns = ['_build', '_ext']

# MyST: `[text](page.md#heading)` links are resolved and checked against these anchors, so a
# renamed page or heading breaks the build (headings down to ####).
myst_heading_anchors = 4
myst_enable_extensions = ['colon_fence']

# Every cross-reference must resolve. Names of other packages (torch, MMEngine, ...) have no
# inventory here (the build reaches no network), so only they are let through.
nitpicky = True
nitpick_ignore_regex = [
    (r'py:.*', r'(.*\.)?_\w+'),  # private helpers, not part of the API
    (r'py:.*', r'(torch|nn|mmengine|mmcv|mmdet|mmseg|mmpretrain|numpy|np|triton)(\..*)?'),
    (r'py:.*', r'(Tensor|Module|Hook|Runner|Config|ConfigDict|BaseModel|BaseInitFunction)'),
    (r'py:.*', r'(typing|collections|pathlib|argparse|enum|dataclasses|pickle|io|os|types)\..*'),
    (r'py:.*', r'(optional|callable|iterable|sequence|mapping|default.*|array.*|tensor.*)'),
    (r'py:.*', r'(T|_T|Path|PathLike|Number|Self)'),
]

autodoc_default_options = {'members': True, 'member-order': 'bysource'}
autodoc_inherit_docstrings = False  # torch's and MMEngine's docstrings are theirs to show
autodoc_typehints = 'description'
autodoc_class_signature = 'separated'
napoleon_google_docstring = True
napoleon_numpy_docstring = False
napoleon_include_special_with_doc = False  # no NamedTuple __new__

html_theme = 'furo'
html_title = f'mmbcn {release}'
html_static_path = ['_static']
html_show_sourcelink = False
