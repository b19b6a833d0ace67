"""Reflex plugins that make the first page load lighter (bench/page.py measures each one).

- LeanRadixThemesPlugin: Radix Themes' CSS with only the colour palettes the UI names, and no
  `import * as` of the whole Radix library into the page bundle.
- CompileHintsPlugin: marks the chunks of the first page load for eager compilation by V8.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Any

import reflex as rx
from reflex_base.plugins.base import Plugin

log = logging.getLogger(__name__)

#: Colour palettes the UI names: the accent, the gray Radix pairs with it (violet → mauve) and
#: every `color_scheme` in chat_app/components. A palette missing here renders without colour.
PALETTES = ("violet", "mauve", "red", "amber", "green")

#: Radix Themes' own split of styles.css (tokens, components, utilities), as its docs describe
#: for importing a subset of the colours.
RADIX_STYLESHEETS = (
    "@radix-ui/themes/tokens/base.css",
    *(f"@radix-ui/themes/tokens/colors/{name}.css" for name in PALETTES),
    "@radix-ui/themes/components.css",
    "@radix-ui/themes/utilities.css",
)


@dataclasses.dataclass
class LeanRadixThemesPlugin(rx.plugins.RadixThemesPlugin):
    """RadixThemesPlugin without the 30 palettes nobody uses and without the library namespace.

    The stock plugin imports `styles.css` (698 kB decoded: every palette in light, dark and P3
    variants, all of them custom properties on the root that each style recalculation carries),
    and registers `@radix-ui/themes` as a "bundled library": the app root then does
    `import * as radix_ui_themes` for `window.__reflex` (used only by components evaluated at
    run time, which this app has none of), which defeats tree shaking and put every Radix
    component (Select, Menu, Slider, ...) into the page bundle, ~240 kB of JavaScript. The
    components the pages use are still imported by name, and their package still installs
    through their own `library`.
    """

    def get_stylesheet_paths(self, **context: Any) -> tuple[str, ...]:
        return RADIX_STYLESHEETS if self.enabled else ()

    def get_frontend_dependencies(self, **context: Any) -> tuple[str, ...]:
        return ()


# A Vite plugin, added to the generated vite.config.js. V8 compiles a function lazily when it
# is first called, on the main thread; during the first page load that was ~100 ms of main
# thread for React's hydration and Reflex's setup (Chrome trace, bench/page.py). The comment
# `//# allFunctionsCalledOnLoad` at the top of a script is Chrome's explicit compile hint
# (Chrome ≥ 136; other browsers ignore it): V8 then compiles the whole file eagerly, on the
# background thread that streams the download. Only chunks the first load executes get it: the
# entry, the route modules and what they import statically; lazy chunks (the Markdown renderer,
# the highlighter's languages) stay lazily compiled.
VITE_COMPILE_HINTS_PLUGIN = """
// Added by chat_app.build_plugins.CompileHintsPlugin (see there for why).
function chatAppCompileHints() {
  const HINT = "//# allFunctionsCalledOnLoad\\n";
  return {
    name: "chat-app-compile-hints",
    apply: "build",
    // "post": after Vite's own generateBundle, which prepends a preload map to route chunks.
    generateBundle: { order: "post", handler(_options, bundle) {
      const chunks = Object.values(bundle).filter((item) => item.type === "chunk");
      const byFile = new Map(chunks.map((chunk) => [chunk.fileName, chunk]));
      const initial = new Set();
      const visit = (chunk) => {
        if (!chunk || initial.has(chunk)) return;
        initial.add(chunk);
        chunk.imports.forEach((file) => visit(byFile.get(file)));
      };
      chunks
        .filter((chunk) => chunk.isEntry || /[\\\\/]app[\\\\/](root|routes[\\\\/][^\\\\/]+)\\.jsx$/
          .test(chunk.facadeModuleId ?? ""))
        .forEach(visit);
      for (const chunk of initial) {
        if (!chunk.code.startsWith(HINT)) chunk.code = HINT + chunk.code;
      }
    } },
  };
}
"""
VITE_DEFINE_ANCHOR = "export default defineConfig"
VITE_PLUGINS_ANCHOR = "alwaysUseReactDomServerNode(),"


def add_compile_hints(vite_config: str) -> str:
    """vite.config.js with the compile-hints plugin; unchanged (and a warning) if the
    template's anchors are gone, since this is an optimisation, not a requirement."""
    if "chatAppCompileHints" in vite_config:
        return vite_config
    if VITE_DEFINE_ANCHOR not in vite_config or VITE_PLUGINS_ANCHOR not in vite_config:
        log.warning("vite.config.js has changed shape; V8 compile hints are not added")
        return vite_config
    return vite_config.replace(
        VITE_DEFINE_ANCHOR, VITE_COMPILE_HINTS_PLUGIN + "\n" + VITE_DEFINE_ANCHOR, 1
    ).replace(VITE_PLUGINS_ANCHOR, VITE_PLUGINS_ANCHOR + "\n    chatAppCompileHints(),", 1)


@dataclasses.dataclass
class CompileHintsPlugin(Plugin):
    """Adds the compile-hints Vite plugin to the vite.config.js Reflex generates.

    Reflex rewrites that file at every compile; a modify task is its way for a plugin to
    change it (its own EmbedPlugin patches the same file the same way).
    """

    def pre_compile(self, **context: Any) -> None:
        context["add_modify_task"]("vite.config.js", add_compile_hints)
