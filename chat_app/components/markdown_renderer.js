// The lazily loaded half of lazy_markdown.js: rx.markdown's defaults (GitHub-flavoured Markdown,
// Radix typography, Prism code blocks that follow the colour mode) and no raw HTML: without a
// rehype-raw plugin react-markdown shows HTML as text, and its URL filter drops `javascript:`.
// Nothing rendered fetches anything: images become links (see `img` below).
import { useContext, useMemo } from "react";
import { jsx } from "@emotion/react";
import ReactMarkdown from "react-markdown";
import remarkGfm from "remark-gfm";
import rehypeUnwrapImages from "rehype-unwrap-images";
import { PrismAsyncLight as SyntaxHighlighter } from "react-syntax-highlighter";
import oneLight from "react-syntax-highlighter/dist/esm/styles/prism/one-light";
import oneDark from "react-syntax-highlighter/dist/esm/styles/prism/one-dark";
import { Code, Heading, Link, Text } from "@radix-ui/themes";
import { ColorModeContext } from "$/utils/context";

const HEADING_MARGINS = { marginTop: "0.5em", marginBottom: "0.5em" };
const BLOCK_MARGINS = { marginTop: "1em", marginBottom: "1em" };

const heading = (level, size) =>
  ({ node, children, ...props }) =>
    jsx(Heading, { as: `h${level}`, size, css: HEADING_MARGINS, ...props }, children);

const list = (tag, listStyleType) =>
  ({ node, children, ...props }) =>
    jsx(tag, { css: { listStyleType, ...BLOCK_MARGINS, marginLeft: "1.5rem" }, ...props },
      children);

const STATIC_COMPONENTS = {
  h1: heading(1, "6"),
  h2: heading(2, "5"),
  h3: heading(3, "4"),
  h4: heading(4, "3"),
  h5: heading(5, "2"),
  h6: heading(6, "1"),
  p: ({ node, children, ...props }) => jsx(Text, { as: "p", css: BLOCK_MARGINS, ...props }, children),
  ul: list("ul", "disc"),
  ol: list("ol", "decimal"),
  li: ({ node, children, ...props }) => jsx("li", { css: HEADING_MARGINS, ...props }, children),
  a: ({ node, children, ...props }) =>
    jsx(Link, { css: { "&:hover": { color: "var(--accent-8)" } }, href: "#", ...props }, children),
  code: ({ node, children, ...props }) => jsx(Code, props, children),
  // An image is never fetched: its URL, in a message or in a file passage the assistant quotes,
  // would have the reader's browser call whatever host it names (with their address, and with
  // whatever a prompt-injected assistant put into the URL). It shows as a link instead, which
  // the reader may choose to open.
  img: ({ src, alt }) => {
    const label = alt ? `Image: ${alt}` : "Image";
    return src ? jsx(Link, { href: src, title: src }, label) : jsx("span", null, label);
  },
};

function codeBlock(colorMode) {
  return ({ node, ...rest }) => {
    const { node: childNode, className, children: parts, ...props } = rest.children.props;
    const code = String(Array.isArray(parts) ? parts.join("\n") : parts).replace(/\n$/, "");
    const match = (className || "").match(/language-(?<lang>.*)/);
    return jsx(SyntaxHighlighter, {
      children: code,
      codeTagProps: { style: { whiteSpace: "pre-wrap" } },
      customStyle: BLOCK_MARGINS,
      language: match ? match[1] : "",
      style: colorMode === "light" ? oneLight : oneDark,
      wrapLongLines: true,
      ...props,
    });
  };
}

const REMARK_PLUGINS = [remarkGfm];
const REHYPE_PLUGINS = [rehypeUnwrapImages];

export default function MarkdownRenderer({ source, className, style }) {
  const { resolvedColorMode } = useContext(ColorModeContext);
  // One component map per colour mode: a new `pre` function on every render would remount the
  // code blocks at each streamed chunk.
  const components = useMemo(
    () => ({ ...STATIC_COMPONENTS, pre: codeBlock(resolvedColorMode) }),
    [resolvedColorMode],
  );
  return jsx(
    "div",
    { className, style },
    jsx(ReactMarkdown, {
      components,
      remarkPlugins: REMARK_PLUGINS,
      rehypePlugins: REHYPE_PLUGINS,
      children: source ?? "",
    }),
  );
}
