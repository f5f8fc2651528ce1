"""The inline style sheet and script of report.html (no file, font or library is fetched: the page works offline).

The script makes every ``table.sortable`` sortable by a click on (or Enter on) a column header: a column whose
cells all start with a number (``0.4512 ± 0.01 [..] †``, ``+0.1075 [..]``, ``4 (3)``, ``0.00 (cache 1/1)``)
sorts by that leading number, i.e. a cell's mean; any other column as text (numbers within it in numeric
order). Missing cells (``–``, empty) go last in both directions; ties keep their order. A second click reverses.
The subset browser's select box (``#selector-filter``) shows only the job panels of one selector.
"""

CSS = """
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 0 auto; max-width: 1400px;
       padding: 0 1.5em 3em; color: #1b1f24; }
h1 { margin-top: .8em; } h2 { border-bottom: 1px solid #d0d7de; padding-bottom: .2em; margin-top: 1.6em; }
nav a { margin-right: 1.2em; }
blockquote { margin: .3em 0; padding: .2em .8em; border-left: 4px solid #d4a72c; background: #fff8e5; }
table { border-collapse: collapse; margin: .6em 0 1.2em; font-size: 13px; }
th, td { border: 1px solid #d0d7de; padding: 3px 7px; text-align: left; vertical-align: top; }
th { background: #f3f5f7; white-space: nowrap; }
table.sortable th { cursor: pointer; user-select: none; }
table.sortable th::after { content: " \\2195"; color: #8c959f; }
table.sortable th[aria-sort="ascending"]::after { content: " \\2191"; color: #1b1f24; }
table.sortable th[aria-sort="descending"]::after { content: " \\2193"; color: #1b1f24; }
tbody tr:nth-child(even) { background: #f8f9fa; }
code { background: #f3f5f7; padding: 0 .25em; border-radius: 3px; }
figure { margin: 1em 0 .2em; } figure img { max-width: 100%; border: 1px solid #d0d7de; }
p.caption { color: #57606a; margin-top: .2em; }
.filter { background: #f3f5f7; padding: .5em .8em; border-radius: 4px; margin: .6em 0; }
.job { border: 1px solid #d0d7de; border-radius: 4px; padding: .2em .9em .6em; margin: 1em 0; }
.job h3 { margin: .5em 0 .2em; } .meta { color: #57606a; margin: .1em 0 .5em; }
.pair { display: flex; gap: 1.2em; align-items: flex-start; } .pair > div { flex: 1 1 0; min-width: 0; overflow-x: auto; }
.pair h4 { margin: .3em 0; }
.text { white-space: pre-wrap; max-height: 7.5em; overflow: auto; max-width: 34em; }
.note { color: #9a6700; }
table.picks td:nth-child(-n+3) { white-space: nowrap; }
table.picks tr.shared td { background: #ddf4ff; }
"""

JS = r"""
(function () {
  "use strict";
  var NUMBER = /^[+\-\u2212]?(\d+(\.\d*)?|\.\d+)(e[+\-]?\d+)?/i;
  function missing(text) { return text === "" || text === "\u2013" || text === "-"; }
  function leading(text) {
    var m = NUMBER.exec(text);
    return m ? parseFloat(m[0].replace("\u2212", "-")) : null;
  }
  function sortTable(table, index, header) {
    var body = table.tBodies[0];
    if (!body) { return; }
    var rows = Array.prototype.slice.call(body.rows);
    var ascending = header.getAttribute("aria-sort") !== "ascending";
    var keyed = rows.map(function (row, i) {
      var cell = row.cells[index];
      return { row: row, i: i, text: cell ? cell.textContent.trim() : "" };
    });
    var numeric = keyed.every(function (k) { return missing(k.text) || leading(k.text) !== null; });
    keyed.forEach(function (k) { k.value = numeric && !missing(k.text) ? leading(k.text) : null; });
    keyed.sort(function (a, b) {
      var am = missing(a.text), bm = missing(b.text);
      if (am || bm) { return am === bm ? a.i - b.i : (am ? 1 : -1); }
      var c = numeric ? a.value - b.value : a.text.localeCompare(b.text, undefined, { numeric: true });
      if (!ascending) { c = -c; }
      return c !== 0 ? c : a.i - b.i;
    });
    keyed.forEach(function (k) { body.appendChild(k.row); });
    Array.prototype.forEach.call(header.parentNode.cells, function (th) { th.removeAttribute("aria-sort"); });
    header.setAttribute("aria-sort", ascending ? "ascending" : "descending");
  }
  Array.prototype.forEach.call(document.querySelectorAll("table.sortable"), function (table) {
    if (!table.tHead) { return; }
    Array.prototype.forEach.call(table.tHead.rows[0].cells, function (th, index) {
      th.tabIndex = 0;
      th.title = "sort by this column";
      th.addEventListener("click", function () { sortTable(table, index, th); });
      th.addEventListener("keydown", function (e) { if (e.key === "Enter") { sortTable(table, index, th); } });
    });
  });
  var filter = document.getElementById("selector-filter");
  if (filter) {
    var count = document.getElementById("filter-count");
    var apply = function () {
      var shown = 0;
      Array.prototype.forEach.call(document.querySelectorAll(".job"), function (panel) {
        var visible = filter.value === "" || panel.getAttribute("data-selector") === filter.value;
        panel.style.display = visible ? "" : "none";
        if (visible) { shown += 1; }
      });
      if (count) { count.textContent = shown + " job" + (shown === 1 ? "" : "s") + " shown"; }
    };
    filter.addEventListener("change", apply);
    apply();
  }
})();
"""
