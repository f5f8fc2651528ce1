"""report.html: report.md as one self-contained page, with a subset browser.

:func:`write_page` renders the report.md just written (headings, caveats, paragraphs, lists, every table,
the figures with their captions) and appends :func:`delift.report.html_picks.browser`. The page is one
file that works offline: the style sheet and script are inline (:mod:`delift.report.html_assets`), each
figure is embedded as a base64 PNG data URI, and a Content-Security-Policy forbids any request (no CDN,
font or image is fetched). Every text from report.md or a result file is HTML-escaped before the few
inline marks report.md uses (``*em*``, ``**strong**``, ```code```) become tags.
"""

from __future__ import annotations

import base64
import re
from html import escape
from pathlib import Path

from delift.report.html_assets import CSS, JS
from delift.report.html_picks import browser
from delift.report.jobs import Group
from delift.report.parts import Parts

PAGE = "report.html"
POLICY = "default-src 'none'; img-src data:; style-src 'unsafe-inline'; script-src 'unsafe-inline'"
IMAGE = re.compile(r"^!\[([^\]]*)\]\(([^)\s]+)\)$")
INLINE = ((re.compile(r"`([^`]+)`"), r"<code>\1</code>"), (re.compile(r"\*\*(.+?)\*\*"), r"<strong>\1</strong>"),
          (re.compile(r"(?<![\w*])\*(?!\s)(.+?)(?<!\s)\*(?![\w*])"), r"<em>\1</em>"))


def inline(text: str) -> str:
    """One line of report.md as HTML: escaped, then its code, strong and emphasis marks as tags."""
    out = escape(text, quote=False)
    for pattern, tag in INLINE:
        out = pattern.sub(tag, out)
    return out


def cells(line: str) -> list[str]:
    return [c.strip() for c in line.strip().removeprefix("|").removesuffix("|").split("|")]


def table(lines: list[str]) -> str:
    """A markdown table (header, ``|---|`` rule, rows) as a sortable HTML table."""
    head, rows = cells(lines[0]), [cells(line) for line in lines[1:] if not re.fullmatch(r"\|?[\s:|-]+\|?", line)]
    return ('<table class="sortable"><thead><tr>' + "".join(f"<th>{inline(h)}</th>" for h in head)
            + "</tr></thead><tbody>\n" + "\n".join("<tr>" + "".join(f"<td>{inline(c)}</td>" for c in r) + "</tr>"
                                                  for r in rows) + "\n</tbody></table>")


def figure(alt: str, src: str, folder: Path) -> str:
    """An image of the report folder, embedded as a data URI (the alt text when the file is missing or outside it)."""
    path = (folder / src).resolve()
    if path.suffix.lower() != ".png" or not path.is_file() or not path.is_relative_to(folder.resolve()):
        return f'<p class="note">figure {escape(src)} not found</p>'
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return f'<figure><img alt="{escape(alt)}" src="data:image/png;base64,{data}"></figure>'


def blocks(text: str) -> list[list[str]]:
    """report.md's lines in blocks: a table's lines together, every other line alone; blank lines dropped."""
    out: list[list[str]] = []
    for line in text.splitlines():
        if not line.strip():
            out.append([])
        elif line.lstrip().startswith("|") and out and out[-1] and out[-1][0].lstrip().startswith("|"):
            out[-1].append(line)
        else:
            out.append([line])
    return [b for b in out if b]


def markdown_html(text: str, folder: Path) -> str:
    """The markdown report.md writes as HTML (figures read from ``folder``, the report folder)."""
    html, items, ids = [], [], {"Figures": "figures", "Notes": "notes"}
    for block in blocks(text):
        line = block[0]
        if line.startswith("- "):
            items.append(f"<li>{inline(line[2:])}</li>")
            continue
        if items:
            html, items = [*html, "<ul>", *items, "</ul>"], []
        heading = re.match(r"^(#{1,6}) (.*)$", line)
        image = IMAGE.match(line.strip())
        if heading:
            level, title = len(heading.group(1)), heading.group(2)
            anchor = f' id="{ids[title]}"' if title in ids else ""
            html.append(f"<h{level}{anchor}>{inline(title)}</h{level}>")
        elif line.lstrip().startswith("|"):
            html.append(table(block))
        elif line.startswith("> "):
            html.append(f"<blockquote>{inline(line[2:])}</blockquote>")
        elif image:
            html.append(figure(image.group(1), image.group(2), folder))
        elif line.startswith("*Figure "):
            html.append(f'<p class="caption">{inline(line)}</p>')
        else:
            html.append(f"<p>{inline(line)}</p>")
    if items:
        html += ["<ul>", *items, "</ul>"]
    return "\n".join(html)


def page(title: str, body: str, subsets: str) -> str:
    """The whole page: head (policy, inline style), navigation, the report, the subset browser, inline script."""
    return "\n".join([
        "<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
        f'<meta http-equiv="Content-Security-Policy" content="{POLICY}">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">', '<link rel="icon" href="data:,">',
        f"<title>{escape(title)}</title>", f"<style>{CSS}</style></head><body>",
        '<nav><a href="#report">tables</a><a href="#figures">figures</a><a href="#subsets">subset browser</a></nav>',
        f'<main><div id="report">{body}</div>', subsets, "</main>", f"<script>{JS}</script>", "</body></html>", ""])


def write_page(out: Path, groups: list[Group], shown: list[str], parts: Parts) -> Path:
    """``out/report.html`` from ``out/report.md`` (written first) and the jobs' picks; returns its path."""
    text = (out / "report.md").read_text()
    title = next((line[2:] for line in text.splitlines() if line.startswith("# ")), "delift report")
    path = out / PAGE
    path.write_text(page(title, markdown_html(text, out), browser(groups, shown, parts)))
    return path
