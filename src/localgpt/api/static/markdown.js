// A small, safe markdown renderer for chat replies: everything is HTML-escaped first, then
// fenced code (with light highlighting), inline code, links (http(s) only), headings,
// emphasis, lists, quotes and paragraphs are marked up. No external code, no network.
"use strict";

const Markdown = (() => {
  const escape = (s) => s.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;")
    .replace(/"/g, "&quot;");

  const KEYWORDS = new Set(("def class return if elif else for while in import from as with try " +
    "except finally raise lambda yield async await pass break continue and or not is None True " +
    "False function const let var new this typeof instanceof export default switch case fn pub " +
    "struct impl let mut match use mod echo fi then do done esac local null undefined true false")
    .split(" "));

  // One pass over the code: strings, comments, numbers and keywords become spans.
  function highlight(code) {
    const token = /("(?:\\.|[^"\\])*"|'(?:\\.|[^'\\])*'|`(?:\\.|[^`\\])*`)|(#[^\n]*|\/\/[^\n]*)|(\b\d+(?:\.\d+)?\b)|([A-Za-z_]\w*)/g;
    let out = "", last = 0, m;
    while ((m = token.exec(code)) !== null) {
      out += escape(code.slice(last, m.index));
      const text = escape(m[0]);
      if (m[1]) out += `<span class="tok-str">${text}</span>`;
      else if (m[2]) out += `<span class="tok-com">${text}</span>`;
      else if (m[3]) out += `<span class="tok-num">${text}</span>`;
      else out += KEYWORDS.has(m[4]) ? `<span class="tok-kw">${text}</span>` : text;
      last = token.lastIndex;
    }
    return out + escape(code.slice(last));
  }

  const emphasis = (text) => text.replace(/\*\*([^*]+)\*\*/g, "<strong>$1</strong>")
    .replace(/(^|[^*])\*([^*\s][^*]*)\*/g, "$1<em>$2</em>");

  function inline(text) {
    // text is already escaped. Code spans, then links, are cut out behind placeholders first,
    // so nothing inside them is marked up (a `*` in a URL does not start emphasis).
    const held = [];
    const hold = (html) => { held.push(html); return `\u0000${held.length - 1}\u0000`; };
    const restore = (s) => s.replace(/\u0000(\d+)\u0000/g, (_, i) => held[+i]);
    text = text.replace(/\u0000/g, "\uFFFD")
      .replace(/`([^`]+)`/g, (_, code) => hold(`<code>${code}</code>`))
      .replace(/\[([^\]]+)\]\((https?:\/\/[^\s)]+)\)/g, (_, label, href) =>
        hold(`<a href="${href}" target="_blank" rel="noopener noreferrer">${restore(emphasis(label))}</a>`));
    return restore(emphasis(text));
  }

  function render(source) {
    const lines = source.replace(/\r\n/g, "\n").split("\n");
    const html = [];
    let para = [], list = null;
    const flush = () => {
      if (para.length) { html.push(`<p>${inline(escape(para.join("\n"))).replace(/\n/g, "<br>")}</p>`); para = []; }
      if (list) { html.push(`</${list}>`); list = null; }
    };
    for (let i = 0; i < lines.length; i++) {
      const line = lines[i];
      const fence = line.match(/^\s*```\s*([\w+-]*)/);
      if (fence) {
        flush();
        const code = [];
        i++;
        while (i < lines.length && !/^\s*```/.test(lines[i])) code.push(lines[i++]);
        const lang = fence[1] ? ` class="lang-${escape(fence[1])}"` : "";
        html.push(`<pre><code${lang}>${highlight(code.join("\n"))}</code></pre>`);
        continue;
      }
      const heading = line.match(/^(#{1,6})\s+(.*)$/);
      const bullet = line.match(/^\s*[-*+]\s+(.*)$/);
      const numbered = line.match(/^\s*\d+[.)]\s+(.*)$/);
      const quote = line.match(/^>\s?(.*)$/);
      if (heading) { flush(); html.push(`<h${heading[1].length}>${inline(escape(heading[2]))}</h${heading[1].length}>`); }
      else if (bullet || numbered) {
        if (para.length) { const keep = list; list = null; flush(); list = keep; }
        const kind = bullet ? "ul" : "ol";
        if (list !== kind) { if (list) html.push(`</${list}>`); html.push(`<${kind}>`); list = kind; }
        html.push(`<li>${inline(escape((bullet || numbered)[1]))}</li>`);
      } else if (quote) { flush(); html.push(`<blockquote>${inline(escape(quote[1]))}</blockquote>`); }
      else if (!line.trim()) flush();
      else { if (list) { html.push(`</${list}>`); list = null; } para.push(line); }
    }
    flush();
    return html.join("");
  }

  return { render, escape };
})();
