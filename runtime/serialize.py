"""Page results -> text, JSON lines, PAGE-XML (2019-07-15) or ALTO (v4): one entry point.

    serialize(result, "page-xml")     # or "txt", "jsonl", "alto"

Each format is one writer in `WRITERS` (a function from a page to its text); a new format
(hOCR, say) is one more writer there. PAGE-XML and ALTO are one document per page.
Also here: `read_page_xml`, which reads the lines of a PAGE-XML file (any PAGE version, as
Transkribus and eScriptorium export it) for evaluation.
"""

from __future__ import annotations

import datetime as _dt
import json
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence
from xml.sax.saxutils import escape, quoteattr

from .errors import DatasetError
from .pages import LineResult, PageResult

PAGE_NS = "http://schema.primaresearch.org/PAGE/gts/pagecontent/2019-07-15"
ALTO_NS = "http://www.loc.gov/standards/alto/ns-v4#"
CREATOR = "htr"


def _points(points: Sequence[tuple[int, int]]) -> str:
    return " ".join(f"{int(x)},{int(y)}" for x, y in points)


def _conf(value: float | None, digits: int = 4) -> float | None:
    return None if value is None else min(1.0, max(0.0, round(float(value), digits)))


def write_txt(page: PageResult) -> str:
    """The page's text, one line per line, in reading order."""
    return "".join(f"{line.text}\n" for line in page.lines)


def line_records(page: PageResult) -> list[dict[str, Any]]:
    """The jsonl fields of each line of a page that was read, in reading order: path, line,
    bbox, polygon, baseline, text, confidence (htr-serve's segment=true answers these too)."""
    return [
        {
            "path": str(page.path), "line": i, "bbox": list(line.line.bbox),
            "polygon": [list(p) for p in line.line.polygon], "baseline": [list(p) for p in line.line.baseline],
            "text": line.text, "confidence": _conf(line.confidence, 6),
        }
        for i, line in enumerate(page.lines)
    ]


def write_jsonl(page: PageResult) -> str:
    """One JSON record per line (`line_records`); a page that failed: one record with path and error."""
    if page.error is not None:
        return json.dumps({"path": str(page.path), "error": page.error}, ensure_ascii=False) + "\n"
    return "".join(json.dumps(record, ensure_ascii=False) + "\n" for record in line_records(page))


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).strftime("%Y-%m-%dT%H:%M:%S")


def _region_box(lines: Sequence[LineResult], page: PageResult) -> tuple[int, int, int, int]:
    x0 = min(ln.line.bbox[0] for ln in lines)
    y0 = min(ln.line.bbox[1] for ln in lines)
    x1 = max(ln.line.bbox[2] for ln in lines) - 1
    y1 = max(ln.line.bbox[3] for ln in lines) - 1
    return x0, y0, min(x1, max(page.width - 1, x0)), min(y1, max(page.height - 1, y0))


def write_page_xml(page: PageResult) -> str:
    """PAGE-XML 2019-07-15: one TextRegion holding the lines, each TextLine with Coords,
    Baseline and TextEquiv (conf: the mean confidence of its characters, when known); the region's ReadingOrder."""
    now = _now()
    head = (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f'<PcGts xmlns="{PAGE_NS}" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" '
        f'xsi:schemaLocation="{PAGE_NS} {PAGE_NS}/pagecontent.xsd">\n'
        f"  <Metadata>\n    <Creator>{CREATOR}</Creator>\n    <Created>{now}</Created>\n"
        f"    <LastChange>{now}</LastChange>\n  </Metadata>\n"
        f'  <Page imageFilename={quoteattr(Path(page.path).name)} imageWidth="{max(1, page.width)}" '
        f'imageHeight="{max(1, page.height)}">\n'
    )
    body = []
    if page.lines:
        x0, y0, x1, y1 = _region_box(page.lines, page)
        body.append(
            "    <ReadingOrder>\n      <OrderedGroup id=\"ro_1\">\n"
            '        <RegionRefIndexed index="0" regionRef="r_1"/>\n      </OrderedGroup>\n    </ReadingOrder>\n'
        )
        body.append(f'    <TextRegion id="r_1" type="paragraph">\n'
                    f'      <Coords points="{_points([(x0, y0), (x1, y0), (x1, y1), (x0, y1)])}"/>\n')
        for i, line in enumerate(page.lines, 1):
            conf = _conf(line.mean_confidence())
            conf_attr = "" if conf is None else f' conf="{conf:.4f}"'
            body.append(
                f'      <TextLine id="r_1_l_{i}" custom="readingOrder {{index:{i - 1};}}">\n'
                f'        <Coords points="{_points(line.line.polygon)}"/>\n'
                f'        <Baseline points="{_points(line.line.baseline)}"/>\n'
                f"        <TextEquiv{conf_attr}>\n          <Unicode>{escape(line.text)}</Unicode>\n"
                f"        </TextEquiv>\n      </TextLine>\n"
            )
        text = escape(page.text)
        body.append(f"      <TextEquiv>\n        <Unicode>{text}</Unicode>\n      </TextEquiv>\n    </TextRegion>\n")
    return head + "".join(body) + "  </Page>\n</PcGts>\n"


def _words(text: str) -> list[tuple[str, int]]:
    """(word, index of its first character) for each space-separated word."""
    out, start = [], None
    for i, ch in enumerate(text + " "):
        if ch.isspace():
            if start is not None:
                out.append((text[start:i], start))
                start = None
        elif start is None:
            start = i
    return out


def write_alto(page: PageResult) -> str:
    """ALTO v4: one TextBlock of TextLines (HPOS, VPOS, WIDTH, HEIGHT, BASELINE, Shape with
    the polygon), each word a String with WC (the mean confidence of its characters) and SP between words;
    a line read as no text gets one String with empty CONTENT (ALTO v4 requires a String in every TextLine)."""
    head = (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f'<alto xmlns="{ALTO_NS}" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" '
        'xsi:schemaLocation="http://www.loc.gov/standards/alto/ns-v4# '
        'http://www.loc.gov/standards/alto/v4/alto-4-2.xsd">\n'
        "  <Description>\n    <MeasurementUnit>pixel</MeasurementUnit>\n"
        f"    <sourceImageInformation>\n      <fileName>{escape(Path(page.path).name)}</fileName>\n"
        "    </sourceImageInformation>\n  </Description>\n"
        f'  <Layout>\n    <Page ID="p_1" PHYSICAL_IMG_NR="1" WIDTH="{max(1, page.width)}" HEIGHT="{max(1, page.height)}">\n'
        f'      <PrintSpace HPOS="0" VPOS="0" WIDTH="{max(1, page.width)}" HEIGHT="{max(1, page.height)}">\n'
    )
    body = []
    if page.lines:
        x0, y0, x1, y1 = _region_box(page.lines, page)
        body.append(f'        <TextBlock ID="b_1" HPOS="{x0}" VPOS="{y0}" WIDTH="{x1 - x0 + 1}" HEIGHT="{y1 - y0 + 1}">\n')
        for i, line in enumerate(page.lines, 1):
            lx0, ly0, lx1, ly1 = line.line.bbox
            baseline = _points(line.line.baseline)
            body.append(
                f'          <TextLine ID="l_{i}" HPOS="{lx0}" VPOS="{ly0}" WIDTH="{lx1 - lx0}" HEIGHT="{ly1 - ly0}" '
                f'BASELINE="{baseline}">\n'
                f'            <Shape><Polygon POINTS="{_points(line.line.polygon)}"/></Shape>\n'
            )
            words = _words(line.text)
            if not words:  # the schema wants at least one String in a TextLine: an empty one keeps the line
                body.append(f'            <String ID="l_{i}_w_1" CONTENT=""/>\n')
            for j, (word, start) in enumerate(words):
                if j:
                    body.append("            <SP/>\n")
                conf = _conf(line.mean_confidence(start, start + len(word)))
                wc = "" if conf is None else f' WC="{conf:.4f}"'
                body.append(f'            <String ID="l_{i}_w_{j + 1}" CONTENT={quoteattr(word)}{wc}/>\n')
            body.append("          </TextLine>\n")
        body.append("        </TextBlock>\n")
    return head + "".join(body) + "      </PrintSpace>\n    </Page>\n  </Layout>\n</alto>\n"


#: The writers, by format name (`--format`).
WRITERS: dict[str, Callable[[PageResult], str]] = {
    "txt": write_txt,
    "jsonl": write_jsonl,
    "page-xml": write_page_xml,
    "alto": write_alto,
}
#: Formats that are one document per page (written as DIR/<stem>.xml).
DOCUMENT_FORMATS = ("page-xml", "alto")
FORMATS = tuple(WRITERS)


def serialize(pages: PageResult | Sequence[PageResult], format: str = "txt") -> str:
    """Render page results in `format` (txt, jsonl, page-xml, alto).

    txt and jsonl take any number of pages (concatenated); PAGE-XML and ALTO are one
    document per page (ValueError for more than one).
    """
    writer = WRITERS.get(format)
    if writer is None:
        raise ValueError(f"unknown format {format!r} (expected one of {', '.join(FORMATS)})")
    items = [pages] if isinstance(pages, PageResult) else list(pages)
    if format in DOCUMENT_FORMATS and len(items) != 1:
        raise ValueError(f"{format} is one document per page, got {len(items)} pages")
    return "".join(writer(page) for page in items)


# --------------------------------------------------------------------------- reading PAGE-XML


@dataclass(frozen=True)
class GroundTruthLine:
    """A line of a PAGE-XML file: its outline and its text (empty if it has none)."""

    polygon: tuple[tuple[int, int], ...]
    text: str


def read_page_xml(path: str | Path) -> list[GroundTruthLine]:
    """The TextLines of a PAGE-XML file (any PAGE namespace version), in document order.

    Raises `DatasetError` naming the file if it is not PAGE-XML or a line has no Coords.
    """
    path = Path(path)
    try:
        root = ET.parse(path).getroot()
    except (OSError, ET.ParseError) as err:
        raise DatasetError(path, f"cannot read PAGE-XML ({err})") from None
    if not root.tag.endswith("PcGts"):
        raise DatasetError(path, f"expected PAGE-XML (a PcGts root), got <{root.tag}>")
    ns = root.tag[1:].split("}")[0] if root.tag.startswith("{") else ""
    q = (lambda t: f"{{{ns}}}{t}") if ns else (lambda t: t)
    lines = []
    for n, el in enumerate(root.iter(q("TextLine")), 1):
        coords = el.find(q("Coords"))
        if coords is None or not coords.get("points"):
            raise DatasetError(path, f"TextLine {el.get('id', n)} has no Coords points")
        try:
            pts = tuple((int(float(a)), int(float(b))) for a, b in (p.split(",") for p in coords.get("points", "").split()))
        except ValueError:
            raise DatasetError(path, f"TextLine {el.get('id', n)}: Coords points are not 'x,y x,y ...'") from None
        unicode = el.find(f"{q('TextEquiv')}/{q('Unicode')}")
        lines.append(GroundTruthLine(pts, (unicode.text or "") if unicode is not None else ""))
    return lines
