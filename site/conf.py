"""Sphinx configuration of the course website. Build it with `make site` (site/build.py), not by hand:
the build lays out the source folder (site/_src) that this configuration reads."""
from pathlib import Path

project = "clipedu"
html_title = "clipedu — CLIP, built from scratch"
author = "clipedu authors"

extensions = ["myst_nb"]

# The notebooks are shown with the outputs stored in solutions/; building never runs them.
nb_execution_mode = "off"
# No page loads the live-widget JavaScript (it would come from a CDN); site/build.py replaces each widget view
# with a note, the notebooks draw a plain figure beside each widget.
nb_ipywidgets_js = {}
# `$...$`, `$$...$$` and LaTeX environments in markdown cells. The maths is typeset in the reader's browser by
# Sphinx's MathJax, loaded from its CDN when the page is read; the build itself needs no network.
myst_enable_extensions = ["dollarmath", "amsmath"]
myst_heading_anchors = 3

exclude_patterns = ["_extra", "**/.ipynb_checkpoints"]
suppress_warnings = ["mystnb.unknown_mime_type"]

html_theme = "sphinx_book_theme"
html_theme_options = {
    "home_page_in_toc": True,
    "show_toc_level": 2,
    "use_download_button": False,
    "use_fullscreen_button": False,
}
html_copy_source = False
html_show_sourcelink = False
html_last_updated_fmt = None


def _add_downloads(app, config):
    """The student notebooks (laid out by build.py in <source>/_extra/notebooks) go to <site>/notebooks/."""
    extra = Path(app.srcdir) / "_extra"
    if extra.is_dir():
        config.html_extra_path = [*config.html_extra_path, str(extra)]


def setup(app):
    app.connect("config-inited", _add_downloads)
