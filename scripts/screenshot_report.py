"""Render a report.html in headless Chromium at a fixed width and cut the page into tiles.

    python scripts/screenshot_report.py RUN/report.html OUT_DIR [--width 1400] [--tile 1300]

Writes ``OUT_DIR/page.png`` (the whole page, trailing background trimmed) and
``OUT_DIR/tile_NN.png`` (consecutive slices of ``--tile`` px) to look at section by section, and
reports horizontal overflow: the report's content column is at most 1,280 px wide and centred, so at
1,400 px the right-hand gutter must be plain page background; any other pixel there is content that
overflowed its card (the y ranges are printed and the exit status is 1).
Needs ``chromium`` on PATH (Debian: ``apt-get install chromium``) and Pillow.
"""
from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from pathlib import Path

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--no-first-run", "--hide-scrollbars"]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("html")
    ap.add_argument("out")
    ap.add_argument("--width", type=int, default=1400)
    ap.add_argument("--height", type=int, default=30000, help="window height (longer pages are cut)")
    ap.add_argument("--tile", type=int, default=1300)
    a = ap.parse_args(argv)
    exe = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    if exe is None:
        print("no chromium on PATH (apt-get install chromium)", file=sys.stderr)
        return 2
    from PIL import Image, ImageChops

    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    page = out / "page.png"
    url = Path(a.html).resolve().as_uri()
    subprocess.run([exe, *FLAGS, f"--screenshot={page}", f"--window-size={a.width},{a.height}", url],
                   check=True, capture_output=True, timeout=180)
    im = Image.open(page).convert("RGB")
    bg = Image.new("RGB", im.size, im.getpixel((im.width - 1, im.height - 1)))
    box = ImageChops.difference(im, bg).getbbox()
    if box:
        im = im.crop((0, 0, im.width, min(im.height, box[3] + 20)))
        im.save(page)
    gutter = im.crop((im.width - 40, 0, im.width, im.height)).convert("L")
    bgv = gutter.getpixel((gutter.width - 1, 0))
    rows = [y for y in range(gutter.height) if any(abs(gutter.getpixel((x, y)) - bgv) > 6
                                                   for x in range(0, gutter.width, 4))]
    n = 0
    for y in range(0, im.height, a.tile):
        im.crop((0, y, im.width, min(im.height, y + a.tile))).save(out / f"tile_{n:02d}.png")
        n += 1
    print(f"{page}: {im.width} x {im.height} px, {n} tiles of {a.tile} px")
    if rows:
        spans, start = [], rows[0]
        for p, q in zip(rows, rows[1:] + [None]):
            if q is None or q != p + 1:
                spans.append((start, p))
                start = q
        print("overflow into the right gutter at y = " + ", ".join(f"{s}-{e}" for s, e in spans))
        return 1
    print("no horizontal overflow")
    return 0


if __name__ == "__main__":
    sys.exit(main())
