"""Markdown rendered by a lazily loaded module (lazy_markdown.js beside this file)."""

from __future__ import annotations

import reflex as rx

# The JS modules are linked into the app's assets (assets/external/, git-ignored) and bundled by
# Vite from there; `importable_path` is their build-time module path.
_MODULE = rx.asset("lazy_markdown.js", shared=True)
rx.asset("markdown_renderer.js", shared=True)  # imported on demand by lazy_markdown.js


class LazyMarkdown(rx.Component):
    """`rx.markdown`'s rendering without its ~250 kB in the page bundle: see lazy_markdown.js."""

    library = _MODULE.importable_path
    tag = "LazyMarkdown"
    # The renderer's packages, pinned to the versions rx.markdown and rx.code_block install.
    lib_dependencies: list[str] = [
        "react-markdown@10.1.0",
        "remark-gfm@4.0.1",
        "rehype-unwrap-images@1.0.0",
        "react-syntax-highlighter@16.1.2",
    ]

    # The Markdown source. A prop rather than a child: the compiler may hoist a Var child into
    # its own element, and react-markdown needs the string.
    source: rx.Var[str]
