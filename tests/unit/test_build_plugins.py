"""The build plugins patch what the installed Reflex generates (bench/page.py measures them)."""

from __future__ import annotations

import re
from pathlib import Path

import reflex as rx
from reflex.utils import frontend_skeleton

from chat_app.build_plugins import (
    PALETTES,
    CompileHintsPlugin,
    LeanRadixThemesPlugin,
    add_compile_hints,
)


def test_the_generated_vite_config_gets_the_compile_hints_plugin_once() -> None:
    # The anchors must exist in the template of the installed Reflex: an upgrade that moves
    # them would otherwise drop the optimisation with only a warning in the build log.
    generated = frontend_skeleton._compile_vite_config(rx.Config(app_name="chat_app"))
    patched = add_compile_hints(generated)
    assert "function chatAppCompileHints()" in patched
    assert "chatAppCompileHints()," in patched
    assert patched.count("alwaysUseReactDomServerNode(),") == 1
    assert add_compile_hints(patched) == patched


def test_an_unknown_vite_config_is_left_alone() -> None:
    assert add_compile_hints("export default {}") == "export default {}"


def test_the_plugin_registers_the_patch_for_vite_config() -> None:
    tasks: list[tuple[str, object]] = []
    CompileHintsPlugin().pre_compile(add_modify_task=lambda path, fn: tasks.append((path, fn)))
    assert tasks == [("vite.config.js", add_compile_hints)]


def test_radix_css_is_split_with_only_the_ui_palettes_and_no_bundled_namespace() -> None:
    plugin = LeanRadixThemesPlugin()
    sheets = plugin.get_stylesheet_paths()
    assert "@radix-ui/themes/styles.css" not in sheets
    assert [s for s in sheets if "/colors/" in s] == [
        f"@radix-ui/themes/tokens/colors/{name}.css" for name in PALETTES
    ]
    assert plugin.get_frontend_dependencies() == ()


RADIX_PALETTES = {
    "tomato", "red", "ruby", "crimson", "pink", "plum", "purple", "violet", "iris", "indigo",
    "blue", "cyan", "teal", "jade", "green", "grass", "brown", "orange", "sky", "mint", "lime",
    "yellow", "amber", "gold", "bronze", "mauve", "slate", "sage", "olive", "sand",
}


def test_every_palette_the_ui_names_is_imported() -> None:
    # A colour_scheme whose palette is not imported renders without colour, silently.
    root = Path(__file__).resolve().parents[2]
    sources = [*(root / "chat_app" / "components").glob("*.py"), root / "rxconfig.py"]
    named = {
        word
        for source in sources
        for word in re.findall(r"""["']([a-z]+)["']""", source.read_text())
        if word in RADIX_PALETTES
    }
    assert named, "the scan found no colour at all"
    assert named <= set(PALETTES), named - set(PALETTES)
