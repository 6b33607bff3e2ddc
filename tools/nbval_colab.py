"""nbval in the Colab twin: compare every stored output except myst-nb's glue records.

Colab has no myst-nb, so :func:`companion.book.glue` records nothing there (the glued values only
matter to the built book, which ``make book`` builds with myst-nb). The stored outputs hold those
records, as ``display_data`` with ``application/papermill.record/...`` data only. This pytest
plugin, loaded with ``-p tools.nbval_colab`` by ``make test-colab``, leaves exactly those data
out of nbval's comparison; everything else a chapter prints is compared as in ``make test``.
"""

from __future__ import annotations

GLUE = "application/papermill.record/"


def without_glue(output: dict) -> dict:
    """``output`` without its glue records (a copy; other outputs are returned unchanged)."""
    data = output.get("data")
    if not data or not any(key.startswith(GLUE) for key in data):
        return output
    kept = type(data)({key: value for key, value in data.items() if not key.startswith(GLUE)})
    return type(output)({**output, "data": kept})  # a NotebookNode stays one (nbval reads attributes)


def pytest_configure(config) -> None:
    from nbval.plugin import IPyNbCell

    original = IPyNbCell.compare_outputs
    if getattr(original, "ignores_glue", False):
        return

    def compare_outputs(self, test, ref, skip_compare=None):
        return original(self, test, [without_glue(output) for output in ref], skip_compare)

    compare_outputs.ignores_glue = True
    IPyNbCell.compare_outputs = compare_outputs
