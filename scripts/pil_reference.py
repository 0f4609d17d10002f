#!/usr/bin/env python3
"""Pillow reference fixtures for edgevl-vision's preprocessing (issue 4, item 2).

Needs Pillow, numpy and scikit-image (e.g. /root/venv-ref/bin/python). Writes small files under
tests/fixtures/vision/:
  resize/    crops (<= 128 px) of the photos scikit-image ships (astronaut, chelsea, coffee) and
             synthetic images, each resized up and down with Image.resize(size, Image.BICUBIC) and
             with Image.LANCZOS (*_lanczos.png); where Pillow 13's pass order differs from the
             horizontal-first order of Pillow <= 12, also the horizontal-first result (*_hfirst.png);
  exif/      a JPEG saved with each EXIF orientation 1..8, a PNG with its eXIf chunk before and
             after the pixels, orientations from XMP packets (JPEG, PNG, WebP) and from a PNG's
             "Raw profile type exif" text, and ImageOps.exif_transpose's result;
  modes/     images in other modes (RGBA, LA, L, 1, P, 16-bit RGB, CMYK JPEG, GIF (one with a first
             frame smaller than its canvas), BMP, WebP) and
             convert("RGB");
  pipeline/  the 384x384 views (global view first, tiles row-major) of one image under each
             strategy, built with Pillow from the LLaVA-NeXT / InternVL recipes of spec.md section 2;
  bad/       files that must be refused: truncated JPEG, empty PNG, zero-width PNG, a PNG header
             claiming 100000x100000, a text file named .png;
  pil_cases.json  the manifest the Rust tests read.
Outputs are stored as PNG (lossless). Optionally `--photos DIR` also writes the full-size photos
as PNG into DIR (used for the table in docs/tiling.md; not committed).
"""
import io
import json
import os
import struct
import sys
import zlib

import numpy as np
from PIL import Image, ImageOps
from skimage import data

sys.path.insert(0, os.path.dirname(__file__))
import tiling_reference as tr  # noqa: E402  (plans: geometry only)

ROOT = os.path.join(os.path.dirname(__file__), "..", "tests", "fixtures", "vision")
BICUBIC = Image.Resampling.BICUBIC
LANCZOS = Image.Resampling.LANCZOS


def save_png(img, rel):
    img.save(os.path.join(ROOT, rel), optimize=True)
    return rel


def synthetic_inputs(rng):
    yy, xx = np.mgrid[0:64, 0:64]
    grad = np.stack([xx * 4, yy * 4, (xx + yy) * 2], -1).clip(0, 255).astype(np.uint8)
    cb = ((np.indices((30, 40)).sum(0) // 5) % 2 * 255).astype(np.uint8)  # 5 px checkerboard, hard edges
    checker = np.stack([cb, 255 - cb, cb // 2], -1)
    noise = rng.integers(0, 256, (24, 32, 3), dtype=np.uint8)
    thin = rng.integers(0, 256, (3, 97, 3), dtype=np.uint8)  # extreme aspect ratio
    return {"gradient": grad, "checker": checker, "noise": noise, "thin": thin}


def resize_cases(rng):
    photos = {
        "astronaut": data.astronaut()[40:152, 180:308],  # 128x112 (w x h): face and suit
        "chelsea": data.chelsea()[60:188, 120:216],  # 96x128
        "coffee": data.coffee()[150:230, 200:328],  # 128x80
    }
    inputs = {**photos, **synthetic_inputs(rng)}
    cases = []
    for name, arr in inputs.items():
        img = Image.fromarray(arr, "RGB")
        w, h = img.size
        targets = [(160, 144), (97, 203), (w // 2, h // 2), (31, 17), (7, 5), (1, 1), (128, 3),
                   (w, h + 1), (w + 5, h), (w, max(1, h // 3)), (max(1, w // 4), h), (w * 3, 2)]
        seen, outs = set(), []
        for (tw, th) in targets:
            tw, th = max(1, tw), max(1, th)
            if (tw, th) in seen:
                continue
            seen.add((tw, th))
            out = img.resize((tw, th), BICUBIC)
            entry = {"size": [tw, th], "file": save_png(out, f"resize/{name}_{tw}x{th}.png")}
            # Pillow <= 12 always ran the horizontal pass first; two single-axis resizes reproduce it.
            legacy = img.resize((tw, h), BICUBIC).resize((tw, th), BICUBIC)
            if legacy.tobytes() != out.tobytes():
                entry["horizontal_first"] = save_png(legacy, f"resize/{name}_{tw}x{th}_hfirst.png")
            lanczos = img.resize((tw, th), LANCZOS)
            entry["lanczos"] = save_png(lanczos, f"resize/{name}_{tw}x{th}_lanczos.png")
            legacy = img.resize((tw, h), LANCZOS).resize((tw, th), LANCZOS)
            if legacy.tobytes() != lanczos.tobytes():
                entry["lanczos_horizontal_first"] = save_png(legacy, f"resize/{name}_{tw}x{th}_lanczos_hfirst.png")
            outs.append(entry)
        cases.append({"input": save_png(img, f"resize/{name}.png"), "size": [w, h], "outputs": outs})
    return cases


def exif_cases():
    base = np.zeros((16, 24, 3), np.uint8)
    colours = [(255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0), (255, 0, 255), (0, 255, 255)]
    for k, c in enumerate(colours):  # 3x2 grid of 8x8 blocks, all distinct
        base[(k // 3) * 8:(k // 3) * 8 + 8, (k % 3) * 8:(k % 3) * 8 + 8] = c
    img = Image.fromarray(base, "RGB")
    cases = []
    for o in range(1, 9):
        exif = Image.Exif()
        exif[0x0112] = o
        rel = f"exif/orient{o}.jpg"
        img.save(os.path.join(ROOT, rel), quality=100, subsampling=0, exif=exif.tobytes())
        with Image.open(os.path.join(ROOT, rel)) as f:
            t = ImageOps.exif_transpose(f).convert("RGB")
        cases.append({"input": rel, "orientation": o, "size": list(t.size),
                      "expected": save_png(t, f"exif/orient{o}_expected.png")})
    # PNG's eXIf chunk (raw TIFF, no "Exif\0\0") before the pixels and after them: Pillow finds
    # the second once the image is loaded, and exif_transpose loads it.
    png = io.BytesIO()
    img.save(png, "PNG")
    png = png.getvalue()
    exif = Image.Exif()
    exif[0x0112] = 6
    chunk = png_chunk(b"eXIf", exif.tobytes()[6:])
    after_ihdr = 8 + 25
    for where, data in [("before", png[:after_ihdr] + chunk + png[after_ihdr:]),
                        ("after", png[:-12] + chunk + png[-12:])]:
        rel = f"exif/orient6_exif_{where}_idat.png"
        with open(os.path.join(ROOT, rel), "wb") as f:
            f.write(data)
        with Image.open(os.path.join(ROOT, rel)) as f:
            t = ImageOps.exif_transpose(f).convert("RGB")
        cases.append({"input": rel, "orientation": 6, "size": list(t.size),
                      "expected": save_png(t, f"exif/orient6_exif_{where}_idat_expected.png")})
    cases += xmp_and_raw_profile_cases(img, png)
    return cases


def xmp_packet(body):
    return (b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
            b'<rdf:Description xmlns:tiff="http://ns.adobe.com/tiff/1.0/"' + body + b'</rdf:RDF></x:xmpmeta>')


def xmp_and_raw_profile_cases(img, png):
    """Orientation from where Pillow's getexif() also looks: the XMP packet's tiff:Orientation when
    the EXIF block has no Orientation tag (JPEG APP1, PNG iTXt/tEXt, WebP), and a PNG's
    "Raw profile type exif" text (ImageMagick's hex EXIF) when it has no eXIf chunk."""
    from PIL import PngImagePlugin

    attr = lambda o: xmp_packet(b' tiff:Orientation="%d"/>' % o)  # noqa: E731
    elem = lambda o: xmp_packet(b'><tiff:Orientation>%d</tiff:Orientation></rdf:Description>' % o)  # noqa: E731
    make_only = Image.Exif()
    make_only[0x010F] = "edgevl"
    exif3 = Image.Exif()
    exif3[0x0112] = 3
    files = []
    jpeg = dict(quality=100, subsampling=0)
    files.append(("xmp6.jpg", lambda f: img.save(f, "JPEG", xmp=attr(6), **jpeg)))
    files.append(("exif_no_tag_xmp8.jpg", lambda f: img.save(f, "JPEG", exif=make_only.tobytes(), xmp=elem(8), **jpeg)))
    files.append(("exif3_xmp6.jpg", lambda f: img.save(f, "JPEG", exif=exif3.tobytes(), xmp=attr(6), **jpeg)))
    # A non-digit value first: Pillow's pattern goes on to the next tiff:Orientation.
    decoy = xmp_packet(b' tiff:Orientation="x"><tiff:Orientation>7</tiff:Orientation></rdf:Description>')
    files.append(("xmp_decoy7.webp", lambda f: img.save(f, "WEBP", lossless=True, xmp=decoy)))
    files.append(("xmp2.webp", lambda f: img.save(f, "WEBP", lossless=True, xmp=attr(2))))
    info = PngImagePlugin.PngInfo()
    info.add_itxt("XML:com.adobe.xmp", elem(5).decode(), zip=True)
    files.append(("xmp5_itxt_zip.png", lambda f: img.save(f, "PNG", pnginfo=info)))
    raw = exif_with_orientation(7)
    profile = f"\nexif\n{len(raw):8}\n" + "\n".join(raw.hex()[i:i + 72] for i in range(0, len(raw.hex()), 72)) + "\n"
    zinfo = PngImagePlugin.PngInfo()
    zinfo.add_text("Raw profile type exif", profile, zip=True)
    files.append(("raw_profile7_ztxt.png", lambda f: img.save(f, "PNG", pnginfo=zinfo)))
    # After the pixels, in a tEXt chunk: Pillow reads it when exif_transpose loads the image.
    after = png_chunk(b"tEXt", b"XML:com.adobe.xmp\0" + attr(4))
    files.append(("xmp4_text_after_idat.png", lambda f: f.write(png[:-12] + after + png[-12:])))
    # An eXIf chunk without the tag beside a raw profile with one: the raw profile is not read.
    no_tag = png_chunk(b"eXIf", make_only.tobytes()[6:])
    tinfo = png_chunk(b"tEXt", b"Raw profile type exif\0" + profile.encode())
    files.append(("exif_no_tag_raw_profile7.png", lambda f: f.write(png[:33] + no_tag + tinfo + png[33:])))
    # An Orientation tag stored as a LONG (Pillow reads any integer type), and one of 0 beside an
    # XMP orientation (the EXIF tag, present, decides: nothing is rotated).
    long6 = b"Exif\0\0II*\0" + struct.pack("<IHHHII", 8, 1, 0x112, 4, 1, 6) + struct.pack("<I", 0)
    files.append(("exif_long6.jpg", lambda f: img.save(f, "JPEG", exif=long6, **jpeg)))
    zero = Image.Exif()
    zero[0x0112] = 0
    files.append(("exif0_xmp6.jpg", lambda f: img.save(f, "JPEG", exif=zero.tobytes(), xmp=attr(6), **jpeg)))
    # Two Exif segments: Pillow reads the first (it appends the second's bytes to it).
    one = io.BytesIO()
    img.save(one, "JPEG", exif=exif_with_orientation(6), **jpeg)
    one = one.getvalue()
    second = exif_with_orientation(3)
    app1 = b"\xff\xe1" + struct.pack(">H", len(second) + 2) + second
    at = one.index(b"\xff\xe1")
    at += 2 + struct.unpack(">H", one[at + 2:at + 4])[0]
    files.append(("two_exif_segments6.jpg", lambda f: f.write(one[:at] + app1 + one[at:])))
    cases = []
    for name, write in files:
        rel = f"exif/{name}"
        with open(os.path.join(ROOT, rel), "wb") as f:
            write(f)
        with Image.open(os.path.join(ROOT, rel)) as f:
            o = f.getexif().get(0x0112, 1)
            t = ImageOps.exif_transpose(f).convert("RGB")
        cases.append({"input": rel, "orientation": o, "size": list(t.size),
                      "expected": save_png(t, f"exif/{name.replace('.', '_')}_expected.png")})
    return cases


def exif_with_orientation(o):
    exif = Image.Exif()
    exif[0x0112] = o
    return exif.tobytes()


def png_chunk(kind, payload):
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def raw_png(width, height, bit_depth, colour_type, rows_bytes):
    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, colour_type, 0, 0, 0)
    idat = zlib.compress(b"".join(b"\x00" + r for r in rows_bytes))
    return b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", idat) + png_chunk(b"IEND", b"")


def gif_with_small_first_frame(transparency, screen=(12, 9), at=(4, 3)):
    """A GIF (a 12x9 logical screen by default) whose first frame covers 5x4 pixels at `at` (4, 3):
    Pillow paints the rest of the canvas with palette entry 0, or with the transparent index's
    colour, and enlarges the image to hold a frame reaching past the screen."""
    frame = Image.new("P", (5, 4))
    frame.putpalette([200, 30, 90, 10, 220, 40, 30, 60, 250, 240, 240, 20] * 64)
    frame.putdata(np.random.default_rng(17).integers(0, 4, 20).tolist())  # its own draws: the others' stay
    out = io.BytesIO()
    extra = {} if transparency is None else {"transparency": transparency}
    frame.save(out, "GIF", optimize=False, **extra)
    data = bytearray(out.getvalue())
    data[6:10] = struct.pack("<HH", *screen)  # the logical screen
    d = data.index(b"\x2c\x00\x00\x00\x00\x05\x00\x04\x00")  # the image descriptor at (0, 0), 5x4
    data[d + 1:d + 5] = struct.pack("<HH", *at)
    return bytes(data)


def mode_cases(rng):
    arr = rng.integers(0, 256, (6, 8, 4), dtype=np.uint8)
    files = {}
    Image.fromarray(arr, "RGBA").save(os.path.join(ROOT, "modes/rgba.png"))
    files["rgba.png"] = None
    Image.fromarray(arr[..., :2], "LA").save(os.path.join(ROOT, "modes/la.png"))
    files["la.png"] = None
    Image.fromarray(arr[..., 0], "L").save(os.path.join(ROOT, "modes/l.png"))
    files["l.png"] = None
    Image.fromarray(arr[..., 0] > 127).convert("1").save(os.path.join(ROOT, "modes/bilevel.png"))
    files["bilevel.png"] = None
    p = Image.fromarray(arr[..., :3], "RGB").quantize(colors=7)
    p.save(os.path.join(ROOT, "modes/palette_trns.png"), transparency=3)
    files["palette_trns.png"] = None
    rgb16 = rng.integers(0, 65536, (5, 7, 3), dtype=np.uint16)
    with open(os.path.join(ROOT, "modes/rgb16.png"), "wb") as f:
        f.write(raw_png(7, 5, 16, 2, [rgb16[y].astype(">u2").tobytes() for y in range(5)]))
    files["rgb16.png"] = None
    frames = [Image.fromarray(arr[..., :3], "RGB").quantize(colors=16),
              Image.fromarray(arr[::-1, :, 1:], "RGB").quantize(colors=16)]
    frames[0].save(os.path.join(ROOT, "modes/anim.gif"), save_all=True, append_images=frames[1:])
    files["anim.gif"] = None
    p.save(os.path.join(ROOT, "modes/transparent.gif"), transparency=3)  # transparent pixels keep their palette colour
    files["transparent.gif"] = None
    for name, transparency in [("small_frame.gif", None), ("small_frame_transparent.gif", 2)]:
        with open(os.path.join(ROOT, "modes", name), "wb") as f:
            f.write(gif_with_small_first_frame(transparency))
        files[name] = None
    # First frames reaching past the logical screen (Pillow enlarges the image), and a 0x0 screen.
    for name, screen, at in [("frame_past_screen.gif", (6, 5), (3, 2)), ("frame_taller_than_screen.gif", (5, 2), (0, 0)),
                             ("zero_screen.gif", (0, 0), (0, 0))]:
        with open(os.path.join(ROOT, "modes", name), "wb") as f:
            f.write(gif_with_small_first_frame(2, screen, at))
        files[name] = None
    Image.fromarray(arr[..., :3], "RGB").save(os.path.join(ROOT, "modes/rgb.bmp"))
    files["rgb.bmp"] = None
    Image.fromarray(arr[..., :3], "RGB").save(os.path.join(ROOT, "modes/lossless.webp"), lossless=True)
    files["lossless.webp"] = None
    # CMYK JPEG (Adobe, inverted), solid 8x8 blocks so the lossy codec adds (almost) nothing.
    cmyk = np.zeros((16, 24, 4), np.uint8)
    for k in range(6):
        cmyk[(k // 3) * 8:(k // 3) * 8 + 8, (k % 3) * 8:(k % 3) * 8 + 8] = rng.integers(0, 256, 4)
    Image.fromarray(cmyk, "CMYK").save(os.path.join(ROOT, "modes/cmyk.jpg"), quality=100, subsampling=0)
    files["cmyk.jpg"] = 2  # JPEG decoders may differ by a level or two
    cases = []
    for name, tolerance in files.items():
        with Image.open(os.path.join(ROOT, "modes", name)) as f:
            rgb = f.convert("RGB")
        cases.append({"input": f"modes/{name}", "size": list(rgb.size), "tolerance": tolerance or 0,
                      "expected": save_png(rgb, f"modes/{name.replace('.', '_')}_rgb.png")})
    return cases


def pipeline_views(img, plan):
    """Views as spec.md section 2 builds them with Pillow: global (stretched) first, then tiles."""
    cols, rows, cw, ch, rw, rh, ox, oy, global_view, _ = plan
    views = [img.resize((384, 384), BICUBIC)] if global_view else []
    canvas = Image.new("RGB", (cw, ch), (0, 0, 0))
    canvas.paste(img.resize((rw, rh), BICUBIC), (ox, oy))
    for r in range(rows):
        for c in range(cols):
            views.append(canvas.crop((c * 384, r * 384, (c + 1) * 384, (r + 1) * 384)))
    return views


def pipeline_cases():
    h, w = 500, 900
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    arr = np.stack([128 + 100 * np.sin(xx / 70), 128 + 100 * np.cos(yy / 45), (xx + yy) / (w + h) * 255], -1)
    arr[100:180, 200:420] = (250, 20, 30)
    arr[300:460, 600:640] = (10, 10, 240)
    img = Image.fromarray(arr.clip(0, 255).astype(np.uint8), "RGB")
    cases = [{"input": save_png(img, "pipeline/input.png"), "size": [w, h], "runs": []}]
    # A small image too: relaxed keeps one tile, llava-next and internvl add more.
    small = img.resize((100, 44), BICUBIC)
    cases.append({"input": save_png(small, "pipeline/small.png"), "size": [100, 44], "runs": []})
    for case, im in zip(cases, [img, small]):
        W, H = im.size
        for name, fn in [("relaxed", lambda: tr.relaxed(W, H, 0, 0.1)), ("llava-next", lambda: tr.llava_next(W, H, 0)),
                         ("internvl", lambda: tr.internvl(W, H, 0))]:
            plan = fn()
            views = pipeline_views(im, plan)
            strip = Image.new("RGB", (384, 384 * len(views)))
            for k, v in enumerate(views):
                strip.paste(v, (0, 384 * k))
            rel = save_png(strip, f"pipeline/{os.path.basename(case['input'])[:-4]}_{name}.png")
            case["runs"].append({"strategy": name, "plan": plan, "views": len(views), "expected": rel})
    return cases


def bad_files():
    good = io.BytesIO()
    Image.fromarray(data.astronaut()[:64, :64]).save(good, "JPEG", quality=90)
    b = good.getvalue()
    with open(os.path.join(ROOT, "bad/truncated.jpg"), "wb") as f:
        f.write(b[: len(b) // 2])
    open(os.path.join(ROOT, "bad/empty.png"), "wb").close()
    with open(os.path.join(ROOT, "bad/zero_width.png"), "wb") as f:
        f.write(raw_png(0, 4, 8, 2, []))
    with open(os.path.join(ROOT, "bad/bomb.png"), "wb") as f:
        # A valid header claiming 100000 x 100000 RGB (30 GB decoded) with one tiny IDAT.
        f.write(raw_png(100000, 100000, 8, 2, [b"\x00\x00\x00"]))
    with open(os.path.join(ROOT, "bad/text.png"), "w") as f:
        f.write("this is not an image\n")
    return ["truncated.jpg", "empty.png", "zero_width.png", "bomb.png", "text.png"]


def main():
    rng = np.random.default_rng(4)
    manifest = {
        "generator": "scripts/pil_reference.py",
        "pillow": Image.__version__,  # the resize fixtures need Pillow >= 13 (pass order)
        "resize": resize_cases(rng),
        "exif": exif_cases(),
        "modes": mode_cases(rng),
        "pipeline": pipeline_cases(),
        "bad": bad_files(),
    }
    with open(os.path.join(ROOT, "pil_cases.json"), "w") as f:
        json.dump(manifest, f, indent=1)
        f.write("\n")
    if "--photos" in sys.argv:
        out = sys.argv[sys.argv.index("--photos") + 1]
        os.makedirs(out, exist_ok=True)
        for name in ["astronaut", "chelsea", "coffee"]:
            Image.fromarray(getattr(data, name)()).save(os.path.join(out, f"{name}.png"))
    print("wrote", ROOT, file=sys.stderr)


if __name__ == "__main__":
    main()
