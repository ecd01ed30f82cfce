"""What the installed torch offers, read from the feature itself (a test per probe that the
other test modules do not already exercise through the code that asks it)."""

import pytest
import torch
from packaging.version import Version

from mmbcn.utils.feature_probes import extensions_need_cxx20

# The first lines of torch 2.14's ATen/ATen.h (2.13's has no such guard).
CXX20_GUARD = '''#pragma once

#if !defined(_MSC_VER) && __cplusplus < 202002L
#error C++20 or later compatible compiler is required to use ATen.
#endif
'''


@pytest.mark.parametrize('text, needed', [(CXX20_GUARD, True), ('#pragma once\n', False)])
def test_cxx20_is_read_from_the_header(tmp_path, text, needed):
    header = tmp_path / 'ATen.h'
    header.write_text(text)
    assert extensions_need_cxx20(str(header)) is needed


def test_a_torch_without_headers_needs_nothing(tmp_path):
    assert extensions_need_cxx20(str(tmp_path / 'missing' / 'ATen.h')) is False


def test_the_installed_torch_needs_cxx20_from_2_14():
    # Each tested stack answers for its torch: 2.1 and 2.13 no, 2.15 yes.
    assert extensions_need_cxx20() is (Version(torch.__version__).release[:2] >= (2, 14))
