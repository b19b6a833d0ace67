"""Generate tests/data/corpus/handbook.pdf deterministically, with no dependencies.

The PDF is written by hand: a catalog, a page tree, one Helvetica Type1 font
(plus Helvetica-Bold for headings), and one uncompressed content stream per
page. Each text line is emitted as its own ``Tj`` followed by ``T*`` so that
text extractors (e.g. pypdf) see explicit line breaks and literal spaces.
No timestamps or random IDs are written, so re-running produces identical bytes.

Usage:  python tests/data/make_corpus_pdf.py
"""

from __future__ import annotations

import textwrap
from pathlib import Path

OUT = Path(__file__).resolve().parent / "corpus" / "handbook.pdf"

PAGE_W, PAGE_H = 612, 792  # US Letter, points
MARGIN = 72
BODY_SIZE = 11
BODY_LEADING = 15
TITLE_SIZE = 15
WRAP_CHARS = 84  # conservative for Helvetica 11pt on a 468pt text width

TITLE = "Skerrow Point Light - Keepers' Handbook"

# One sub-topic per page: (heading, [paragraphs]).
PAGES: list[tuple[str, list[str]]] = [
    (
        "Page 1: Watch Duties and the Daily Routine",
        [
            "Skerrow Point Light stands on a basalt headland 14 kilometres north of the "
            "fishing village of Ardnish. The station is crewed by three keepers: the "
            "Principal Keeper, currently Agnes Tulloch, and two Assistant Keepers. Each "
            "keeper serves a tour of 28 days on the rock, after which the relief boat "
            "from Ardnish harbour brings a replacement and fresh supplies.",
            "The night is divided into three watches of four hours each. The first watch "
            "runs from 20:00 to midnight, the middle watch from midnight to 04:00, and "
            "the morning watch from 04:00 to 08:00. The keeper on watch must remain in "
            "the lamp room or the watch room directly below it and may not leave the "
            "tower during the watch.",
            "The light is lit 30 minutes before sunset and extinguished 30 minutes after "
            "sunrise, using the printed table of sunset times kept beside the logbook. "
            "An entry is made in the station logbook every hour of darkness, recording "
            "the condition of the lamp, the rotation speed and any passing vessels. "
            "Handover between watches takes place at the top of the tower, and both "
            "keepers sign the logbook.",
        ],
    ),
    (
        "Page 2: The Lamp and the Fresnel Lens",
        [
            "The optic is a first-order Fresnel lens made in 1889 by Chance Brothers of "
            "Smethwick. It weighs about 6 tonnes and floats on a bath of mercury, which "
            "allows it to turn with very little friction. The light character of Skerrow "
            "Point is two white flashes every 15 seconds, visible for 22 nautical miles "
            "in clear weather.",
            "The light source is a 1000 watt halogen lamp. Twelve spare lamps are kept "
            "in the lamp store, and an automatic changer swaps in a new lamp if the "
            "working one fails. If the electric drive motor fails, the keeper engages "
            "the old clockwork rotation mechanism, which must be wound by hand every "
            "40 minutes.",
            "The lens prisms are cleaned every morning with a soft chamois leather and "
            "a small amount of methylated spirit. Never touch the glass with bare hands. "
            "The lamp room curtains must be drawn by 09:00 on sunny days, because the "
            "lens can focus sunlight strongly enough to scorch the lamp and start a fire "
            "inside the lantern.",
        ],
    ),
    (
        "Page 3: The Fog Signal",
        [
            "When visibility at sea falls below 3 nautical miles, the keeper on duty must "
            "start the fog signal. Skerrow Point uses a diaphone horn that sounds two "
            "blasts every 60 seconds, each blast lasting 3 seconds. The horn can be "
            "heard up to 4 nautical miles away in calm conditions.",
            "Compressed air for the diaphone is supplied by two Gardner diesel "
            "compressors in the engine house. Only one compressor runs at a time; the "
            "second is a standby. The horn must be sounding within 10 minutes of fog "
            "being observed, so the standby engine is test-run for 15 minutes every "
            "Monday morning.",
            "Record the times when the fog signal is started and stopped in the fog "
            "register, together with the estimated visibility. Keepers must wear ear "
            "defenders in the engine house and on the gallery whenever the horn is "
            "sounding. Neighbouring crofters at Ardnish may telephone if the horn is "
            "heard in clear weather, which usually means the fog detector needs "
            "cleaning.",
        ],
    ),
    (
        "Page 4: Weather Observations and Radio Reports",
        [
            "Weather observations are taken every 3 hours, at 00:00, 03:00, 06:00 and so "
            "on, and reported to the Coastguard station at Kirkwall. Each report gives "
            "the barometric pressure in hectopascals, the wind direction and force on "
            "the Beaufort scale, the sea state, the visibility and the air temperature.",
            "Reports are sent by VHF radio. Call the Coastguard on channel 16 using the "
            "station callsign Skerrow Light, then move to working channel 67 to pass the "
            "observation. If the VHF set fails, use the backup telephone line to "
            "Kirkwall and note the failure in the radio log.",
            "Watch the barometer closely. If the pressure falls by 5 hectopascals or more "
            "within 3 hours, a gale is likely: report it immediately as a storm warning "
            "instead of waiting for the next scheduled observation. During a storm, the "
            "gallery door must stay shut and no keeper may go outside the tower without "
            "a safety line.",
        ],
    ),
    (
        "Page 5: Emergencies, Rescue and Station Supplies",
        [
            "If a vessel is seen in distress, fire two red parachute flares from the "
            "gallery to show that the station has seen it, then send a Mayday relay to "
            "the Coastguard on VHF channel 16. The lifebuoy on the landing stage has a "
            "30 metre line. A first aid kit and a stretcher are kept in the boathouse.",
            "A fire in the lamp room must be fought with the carbon dioxide "
            "extinguishers mounted beside the lantern stairs; never use water near the "
            "mercury bath or the electrical cabinet. The helicopter landing pad is on the "
            "flat ground east of the keepers' cottages and must be kept clear of gear.",
            "The station stores must never fall below these minimum levels: 18,000 "
            "litres of fresh water in the rainwater cistern, 4,000 litres of diesel for "
            "the generators and compressors, and 6 weeks of emergency rations in the "
            "food store. From May to July the gulls nest on the headland, so keepers "
            "should wear a hat and carry a stick when crossing to the engine house.",
        ],
    ),
]


def pdf_escape(text: str) -> str:
    """Escape a string for use inside a PDF literal string (...)."""
    text.encode("ascii")  # keep the PDF ASCII-only; raises if not
    return text.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")


def page_stream(heading: str, paragraphs: list[str], page_no: int, total: int) -> bytes:
    lines: list[str] = []
    top = PAGE_H - MARGIN
    lines.append("BT")
    # Document title (small, repeated on each page as a running header).
    lines.append(f"/F1 9 Tf 9 TL {MARGIN} {top} Td")
    lines.append(f"({pdf_escape(TITLE)}) Tj T*")
    lines.append("T*")
    # Page heading.
    lines.append(f"/F2 {TITLE_SIZE} Tf {TITLE_SIZE + 6} TL")
    lines.append(f"({pdf_escape(heading)}) Tj T*")
    # Body text.
    lines.append(f"/F1 {BODY_SIZE} Tf {BODY_LEADING} TL")
    for i, para in enumerate(paragraphs):
        if i:
            lines.append("T*")  # blank line between paragraphs
        for wrapped in textwrap.wrap(para, WRAP_CHARS):
            lines.append(f"({pdf_escape(wrapped)}) Tj T*")
    lines.append("ET")
    # Footer with the page number.
    lines.append("BT")
    lines.append(f"/F1 9 Tf {PAGE_W // 2 - 20} {MARGIN // 2} Td")
    lines.append(f"({pdf_escape(f'Page {page_no} of {total}')}) Tj")
    lines.append("ET")
    return ("\n".join(lines) + "\n").encode("ascii")


def build_pdf() -> bytes:
    n = len(PAGES)
    # Object numbering: 1 catalog, 2 pages, 3 F1, 4 F2, then (page, content) pairs.
    objects: dict[int, bytes] = {}
    page_ids = [5 + 2 * i for i in range(n)]
    objects[1] = b"<< /Type /Catalog /Pages 2 0 R >>"
    kids = " ".join(f"{pid} 0 R" for pid in page_ids)
    objects[2] = f"<< /Type /Pages /Kids [{kids}] /Count {n} >>".encode("ascii")
    objects[3] = (
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica "
        b"/Encoding /WinAnsiEncoding >>"
    )
    objects[4] = (
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica-Bold "
        b"/Encoding /WinAnsiEncoding >>"
    )
    for i, (heading, paragraphs) in enumerate(PAGES):
        pid, cid = page_ids[i], page_ids[i] + 1
        objects[pid] = (
            f"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 {PAGE_W} {PAGE_H}] "
            f"/Resources << /Font << /F1 3 0 R /F2 4 0 R >> >> "
            f"/Contents {cid} 0 R >>"
        ).encode("ascii")
        stream = page_stream(heading, paragraphs, i + 1, n)
        objects[cid] = (
            f"<< /Length {len(stream)} >>\nstream\n".encode("ascii")
            + stream
            + b"endstream"
        )

    out = bytearray(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
    offsets: dict[int, int] = {}
    for num in sorted(objects):
        offsets[num] = len(out)
        out += f"{num} 0 obj\n".encode("ascii") + objects[num] + b"\nendobj\n"
    xref_pos = len(out)
    size = max(objects) + 1
    out += f"xref\n0 {size}\n".encode("ascii")
    out += b"0000000000 65535 f \n"
    for num in range(1, size):
        out += f"{offsets[num]:010d} 00000 n \n".encode("ascii")
    out += f"trailer\n<< /Size {size} /Root 1 0 R >>\nstartxref\n{xref_pos}\n%%EOF\n".encode(
        "ascii"
    )
    return bytes(out)


def main() -> None:
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_bytes(build_pdf())
    print(f"wrote {OUT} ({OUT.stat().st_size} bytes, {len(PAGES)} pages)")


if __name__ == "__main__":
    main()
