// Renders the math that pymdownx.arithmatex (generic mode) leaves in the page:
// <span class="arithmatex">\(...\)</span> (inline) and <div class="arithmatex">\[...\]</div> (display).
// KaTeX is vendored next to this file (javascripts/katex/), so a locally built site needs no network.
(function () {
  "use strict";

  function strip(tex) {
    var t = tex.trim();
    var pairs = [["\\(", "\\)"], ["\\[", "\\]"], ["$$", "$$"], ["$", "$"]];
    for (var i = 0; i < pairs.length; i++) {
      var open = pairs[i][0], close = pairs[i][1];
      if (t.slice(0, open.length) === open && t.slice(t.length - close.length) === close) {
        return t.slice(open.length, t.length - close.length);
      }
    }
    return t;
  }

  function renderAll(root) {
    if (typeof katex === "undefined") {
      return;
    }
    var nodes = (root || document).querySelectorAll(".arithmatex");
    for (var i = 0; i < nodes.length; i++) {
      var el = nodes[i];
      if (el.getAttribute("data-katex-done") === "1") {
        continue;
      }
      var display = el.tagName.toLowerCase() === "div";
      var tex = strip(el.textContent);
      try {
        katex.render(tex, el, { displayMode: display, throwOnError: false, strict: "ignore" });
        el.setAttribute("data-katex-done", "1");
      } catch (err) {
        el.setAttribute("data-katex-error", String(err));
      }
    }
    document.documentElement.setAttribute("data-math-rendered", String(nodes.length));
  }

  if (typeof document$ !== "undefined" && document$.subscribe) {
    // Material's instant navigation: render after every page swap
    document$.subscribe(function () { renderAll(document); });
  } else if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", function () { renderAll(document); });
  } else {
    renderAll(document);
  }
})();
