"""A report's blocks rendered: as Markdown, and as one self-contained HTML page.

A block is a tuple: ``("h1" | "h2" | "p", text)``, ``("list", items)``, ``("table", headers,
rows)`` or ``("image", file name, caption)``. Text may hold Markdown's `code` spans.
"""

from __future__ import annotations

import base64
import html

CSS = """body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:1em 0;font-size:.9em}th,td{border:1px solid #ccc;padding:.3em .6em}
th{background:#f3f3f3}td{text-align:right}td:first-child{text-align:left}img{max-width:100%}
code{background:#f3f3f3;padding:0 .2em}"""


def to_markdown(blocks: list[tuple]) -> str:
    parts = []
    for kind, *content in blocks:
        if kind == "table":
            headers, rows = content
            lines = [headers, ["---"] * len(headers), *rows]
            parts.append("\n".join("| " + " | ".join(_md_cell(c) for c in line) + " |" for line in lines))
        elif kind == "list":
            parts.append("\n".join(f"- {item}" for item in content[0]))
        elif kind == "image":
            parts.append(f"![{content[1]}]({content[0]})")
        else:
            parts.append({"h1": "# ", "h2": "## ", "p": ""}[kind] + content[0])
    return "\n\n".join(parts) + "\n"


def to_html(blocks: list[tuple], pngs: dict[str, bytes], title: str) -> str:
    """One self-contained page: inline CSS, figures as ``data:image/png;base64``, no scripts."""
    body = []
    for kind, *content in blocks:
        if kind == "table":
            headers, rows = content
            head = "".join(f"<th>{_inline(h)}</th>" for h in headers)
            cells = "".join("<tr>" + "".join(f"<td>{_inline(c)}</td>" for c in row) + "</tr>" for row in rows)
            body.append(f"<table><thead><tr>{head}</tr></thead><tbody>{cells}</tbody></table>")
        elif kind == "list":
            body.append("<ul>" + "".join(f"<li>{_inline(item)}</li>" for item in content[0]) + "</ul>")
        elif kind == "image":
            data = base64.b64encode(pngs[content[0]]).decode("ascii")
            body.append(
                f'<figure><img alt="{html.escape(content[1])}" src="data:image/png;base64,{data}">'
                f"<figcaption>{html.escape(content[1])}</figcaption></figure>"
            )
        else:
            body.append(f"<{kind}>{_inline(content[0])}</{kind}>")
    return (
        f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{html.escape(title)}: comparison</title><style>{CSS}</style></head>\n<body>\n"
        + "\n".join(body)
        + "\n</body></html>\n"
    )


def _md_cell(text: str) -> str:
    return str(text).replace("|", "\\|")


def _inline(text: str) -> str:
    """HTML-escapes text, turning Markdown's paired `code` spans into tags."""
    parts = html.escape(str(text)).split("`")
    if len(parts) % 2 == 0:  # an unpaired backtick: leave it as it is
        return html.escape(str(text))
    return "".join(f"<code>{part}</code>" if i % 2 else part for i, part in enumerate(parts))
