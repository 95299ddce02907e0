"""A small Sphinx extension for the book build (listed in ``_config.yml``).

sphinx-thebe registers its configuration script once per read of the environment; when Sphinx reads it more
than once in a build, every page gets ``const THEBE_JS_URL = ...`` twice and the browser reports a redeclared
identifier on every page. Here each page's script list is de-duplicated (same file and same inline body),
keeping the first occurrence and the order (an inline script's filename is ``None`` or ``''``).
"""

from __future__ import annotations


def _dedupe_scripts(app, pagename, templatename, context, doctree):
    scripts = context.get("script_files")
    if not scripts:
        return
    seen, kept = set(), []
    for js in scripts:
        # inline scripts come with filename None from one extension and '' from another
        key = (str(getattr(js, "filename", js) or ""), repr(sorted(getattr(js, "attributes", {}).items())))
        if key in seen:
            continue
        seen.add(key)
        kept.append(js)
    context["script_files"] = kept


def setup(app):
    app.connect("html-page-context", _dedupe_scripts, priority=900)
    return {"parallel_read_safe": True, "parallel_write_safe": True, "version": "1"}
