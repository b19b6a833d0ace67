"""Reflex plugins that make the first page load lighter (bench/page.py measures each one).

- LeanRadixThemesPlugin: Radix Themes' CSS with only the colour palettes the UI names, and no
  `import * as` of the whole Radix library into the page bundle.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import reflex as rx

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
