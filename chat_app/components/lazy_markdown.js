// Markdown for the chat log, loaded on demand. react-markdown, remark-gfm and the syntax
// highlighter are ~250 kB of JavaScript whose module setup alone cost ~40 ms of main thread at
// every page load (bench/page.py), while a new session's page has no message to render. This
// module is the only part in the page bundle; the renderer arrives with the first message.
import { createElement, lazy, Suspense } from "react";

const loadRenderer = () => import("./markdown_renderer.js");
const Renderer = lazy(loadRenderer);

// Fetch it as soon as the user starts doing something (focusing the composer, a click, a key),
// so it is there by the time their first message shows; a page with messages loads it at once
// by rendering them. Not earlier: evaluating it while the page connects would delay that.
const PREFETCH_EVENTS = ["focusin", "pointerdown", "keydown"];
if (typeof window !== "undefined") {
  const prefetch = () => {
    for (const type of PREFETCH_EVENTS) window.removeEventListener(type, prefetch, true);
    loadRenderer().catch(() => {}); // a failure shows up where a message renders
  };
  for (const type of PREFETCH_EVENTS) window.addEventListener(type, prefetch, true);
}

export function LazyMarkdown({ source, className, style }) {
  // While the renderer loads (once per page), the source shows as plain, inert text.
  const fallback = createElement(
    "div",
    { className, style: { ...style, whiteSpace: "pre-wrap" } },
    source,
  );
  return createElement(
    Suspense,
    { fallback },
    createElement(Renderer, { source, className, style }),
  );
}
