"""Optional dependencies: a missing extra is one error that names it."""

import importlib
import sys

import pytest

from fedhub.errors import ConfigError
from fedhub.extras import MissingExtra, needs_extra


def test_a_missing_module_names_the_extra_to_install():
    with pytest.raises(MissingExtra) as caught:
        with needs_extra("pdf", "PDF invoices"):
            import fedhub_no_such_module  # noqa: F401
    assert str(caught.value) == (
        "PDF invoices needs fedhub_no_such_module, which is not installed: "
        "pip install 'fedhub[pdf]'"
    )
    # callers catching either kind still catch it; services map it to a JSON error
    assert isinstance(caught.value, ImportError) and isinstance(caught.value, ConfigError)
    assert caught.value.to_json()["error"]["code"] == "missing_extra"


def render_a_pdf():
    from fedhub.billing.render import render_pdf

    render_pdf({})


def import_the_fl_engine():
    importlib.import_module("fedhub.fl")


@pytest.mark.parametrize(
    ("blocked", "call", "extra"),
    [("weasyprint", render_a_pdf, "pdf"), ("torch", import_the_fl_engine, "fl")],
)
def test_optional_imports_in_core_say_which_extra(monkeypatch, blocked, call, extra):
    monkeypatch.setitem(sys.modules, blocked, None)  # importing it raises ModuleNotFoundError
    for name in [m for m in sys.modules if m == "fedhub.fl" or m.startswith("fedhub.fl.")]:
        monkeypatch.delitem(sys.modules, name)  # import fedhub.fl afresh; restored after
    with pytest.raises(MissingExtra, match=rf"pip install 'fedhub\[{extra}\]'"):
        call()
