// The book's own script (Jupyter Book links every .js under _static/ into every page).
// Chinese text in the theme's navigation, banner and search results, which the build does
// not mark (_ext/llminfra_site.py marks the page body), gets lang="zh-CN" here, so the
// CJK font list of llminfra.css applies there too.
(function () {
  "use strict";
  var CJK_RUN = /[\u2e80-\u2fff\u3000-\u303f\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\ufe30-\ufe4f\uff00-\uffef](?:[\u2e80-\u2fff\u3000-\u303f\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\ufe30-\ufe4f\uff00-\uffef\s\u00b7]*[\u2e80-\u2fff\u3000-\u303f\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\ufe30-\ufe4f\uff00-\uffef])?/g;

  function markCjk(root) {
    var walker = document.createTreeWalker(root, NodeFilter.SHOW_TEXT), nodes = [];
    while (walker.nextNode()) {
      var node = walker.currentNode, parent = node.parentElement;
      CJK_RUN.lastIndex = 0;
      if (!parent || !CJK_RUN.test(node.data)) continue;
      if (parent.closest("script, style, textarea, [lang^='zh']")) continue;
      nodes.push(node);
    }
    nodes.forEach(function (node) {
      var frag = document.createDocumentFragment(), text = node.data, last = 0, m;
      CJK_RUN.lastIndex = 0;
      while ((m = CJK_RUN.exec(text)) !== null) {
        if (m.index > last) frag.appendChild(document.createTextNode(text.slice(last, m.index)));
        var span = document.createElement("span");
        span.lang = "zh-CN";
        span.textContent = m[0];
        frag.appendChild(span);
        last = m.index + m[0].length;
      }
      if (last < text.length) frag.appendChild(document.createTextNode(text.slice(last)));
      node.parentNode.replaceChild(frag, node);
    });
  }

  // The widgets' HTML manager typesets labels with MathJax 2's MathJax.Hub.Queue whenever
  // window.MathJax exists; the book serves MathJax 3, which has no Hub. Give it one that
  // typesets with MathJax 3, before the manager renders (its listener runs after this one).
  window.addEventListener("load", function () {
    var mj = window.MathJax;
    if (!mj || mj.Hub || !mj.startup) return;   // no MathJax 3 on this page
    mj.Hub = {
      Queue: function (job) {
        var el = job && job[2];
        var ready = mj.startup && mj.startup.promise ? mj.startup.promise : Promise.resolve();
        ready.then(function () {
          if (typeof mj.typesetPromise === "function") return mj.typesetPromise(el ? [el] : undefined);
        }).catch(function () {});
      }
    };
  });

  function run() {
    markCjk(document.body);
    // search results arrive after load
    var results = document.getElementById("search-results");
    if (results && window.MutationObserver) {
      new MutationObserver(function () { markCjk(results); }).observe(results, {childList: true, subtree: true});
    }
  }
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", run);
  else run();
})();
