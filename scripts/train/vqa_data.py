"""Deterministic synthetic image-question data for the edgevl demo model (docs/training.md).

Three tasks, each a function of (split, index) only, so a sample is the same on every machine
with the pinned Pillow (requirements-train.txt; text is drawn with the FreeType font embedded in
Pillow, `ImageFont.load_default(size)`):

* ``shapes``: coloured circles, squares, triangles and stars on a plain background; questions
  "what shape", "which colour", "how many", "where" (left/right or top/bottom), "which is bigger".
* ``ocr``: one or two signs with a word or a number; "what does the (red) sign say".
* ``chart``: a bar chart with lettered bars; "which bar is the highest / lowest".

Images have many sizes and aspect ratios (up to 5:1 either way); objects and text are often small
against a large image, so they are legible in the 384x384 tiles but not in the global view.
Splits: ``train``, ``val`` and ``test`` draw from disjoint seed streams.
"""

import math
import os
import random

from PIL import Image, ImageDraw, ImageFont

TASKS = ("shapes", "ocr", "chart")
SPLITS = ("train", "val", "test")
COLOURS = {
    "red": (220, 30, 30), "green": (30, 160, 40), "blue": (30, 60, 220),
    "yellow": (235, 200, 20), "purple": (140, 40, 170), "orange": (245, 130, 20),
}
SHAPES = ("circle", "square", "triangle", "star")
# The signs' text height range in image pixels and its cap as a share of the image's short side. A pilot may set
# `EDGEVL_SIGN_TEXT=lo,hi,cap` (docs/training.md, "Bigger signs"); the shipped data is the default. Either way one
# random draw a sample, so the rest of a sample's stream is unchanged.
SIGN_TEXT = tuple(float(v) for v in os.environ.get("EDGEVL_SIGN_TEXT", "14,32,0.3").split(","))
WORDS = ("STOP", "OPEN", "EXIT", "SALE", "PARK", "CAFE", "BOOK", "FISH", "MILK", "RAIN", "SNOW", "GOLD",
         "BANK", "SHOP", "HOTEL", "TAXI", "BUS", "TRAIN", "PIZZA", "BREAD", "MUSIC", "RIVER", "HOUSE",
         "WATER", "FIRE", "LIGHT", "NORTH", "SOUTH", "EAST", "WEST", "HELLO", "CLOSED", "POLICE", "SCHOOL",
         "MARKET", "GARDEN", "BEACH", "FOREST", "APPLE", "LEMON")
LETTERS = "ABCDEFGH"
SUFFIX = {"word": " Answer with one word.", "number": " Answer with a number.",
          "text": " Answer with the text only."}
_FONTS = {}


def font(size):
    """Pillow's embedded FreeType font (Aileron Regular) at `size` px."""
    if size not in _FONTS:
        f = ImageFont.load_default(size=size)
        if not isinstance(f, ImageFont.FreeTypeFont):
            raise RuntimeError("Pillow without FreeType: the renders would differ (see requirements-train.txt)")
        _FONTS[size] = f
    return _FONTS[size]


def rng_for(split, task, index):
    """The sample's own random stream (Python seeds a str through SHA-512: stable everywhere)."""
    if split not in SPLITS or task not in TASKS:
        raise ValueError(f"unknown split/task {split}/{task}")
    return random.Random(f"edgevl-demo/{split}/{task}/{index}")


def image_size(rng, small=False):
    """(W, H): log-uniform aspect ratio in [1/3, 3], a fifth of them extreme (3..5 either way);
    long side 300..1400 px (120..560 when `small`, for the single-view stages)."""
    if rng.random() < 0.2:
        aspect = rng.uniform(3.0, 5.0)
    else:
        aspect = math.exp(rng.uniform(0.0, math.log(3.0)))
    if rng.random() < 0.5:
        aspect = 1.0 / aspect
    long_side = rng.uniform(120, 560) if small else math.exp(rng.uniform(math.log(300), math.log(1400)))
    if aspect >= 1:
        w, h = long_side, long_side / aspect
    else:
        w, h = long_side * aspect, long_side
    return max(int(w), 48), max(int(h), 48)


def background(rng, w, h):
    base = [rng.randint(200, 250) for _ in range(3)]
    return Image.new("RGB", (w, h), tuple(base))


def draw_shape(d, kind, cx, cy, r, fill):
    if kind == "circle":
        d.ellipse([cx - r, cy - r, cx + r, cy + r], fill=fill)
    elif kind == "square":
        s = r * 0.88
        d.rectangle([cx - s, cy - s, cx + s, cy + s], fill=fill)
    elif kind == "triangle":
        d.polygon([(cx, cy - r), (cx - r * 0.95, cy + r * 0.75), (cx + r * 0.95, cy + r * 0.75)], fill=fill)
    else:  # star: five points
        pts = []
        for k in range(10):
            a = -math.pi / 2 + k * math.pi / 5
            rr = r if k % 2 == 0 else r * 0.45
            pts.append((cx + rr * math.cos(a), cy + rr * math.sin(a)))
        d.polygon(pts, fill=fill)


def place(rng, w, h, radii, tries=200):
    """Non-overlapping centres for circles of `radii` inside w x h (None when they do not fit)."""
    out = []
    for r in radii:
        for _ in range(tries):
            if w <= 2 * r + 4 or h <= 2 * r + 4:
                return None
            cx, cy = rng.uniform(r + 2, w - r - 2), rng.uniform(r + 2, h - r - 2)
            if all(math.hypot(cx - x, cy - y) > r + q + 6 for (x, y, q) in out):
                out.append((cx, cy, r))
                break
        else:
            return None
    return out


def qa(question, answer, kind, suffix):
    return {"question": question + SUFFIX[suffix], "answer": answer, "type": kind}


def shapes_sample(rng, small):
    while True:
        w, h = image_size(rng, small)
        n = rng.randint(1, 5)
        pairs = rng.sample([(c, s) for c in COLOURS for s in SHAPES], n)
        # Object radius: 4%..14% of the short side, at least 7 px (small against large images).
        radii = [max(7.0, rng.uniform(0.04, 0.14) * min(w, h)) for _ in range(n)]
        spots = place(rng, w, h, radii)
        if spots is not None:
            break
    img = background(rng, w, h)
    d = ImageDraw.Draw(img)
    objs = []
    for (c, s), (cx, cy, r) in zip(pairs, spots):
        draw_shape(d, s, cx, cy, r, COLOURS[c])
        objs.append({"colour": c, "shape": s, "x": cx / w, "y": cy / h, "r": r})
    qs = []
    colours = [o["colour"] for o in objs]
    kinds = [o["shape"] for o in objs]
    by_colour = [o for o in objs if colours.count(o["colour"]) == 1]
    if by_colour:
        o = rng.choice(by_colour)
        qs.append(qa(f"What shape is the {o['colour']} object?", o["shape"], "shape", "word"))
    by_kind = [o for o in objs if kinds.count(o["shape"]) == 1]
    if by_kind:
        o = rng.choice(by_kind)
        qs.append(qa(f"What colour is the {o['shape']}?", o["colour"], "colour", "word"))
    qs.append(qa("How many shapes are there?", str(n), "count", "number"))
    horizontal = w >= h
    axis, (lo, hi) = ("x", ("left", "right")) if horizontal else ("y", ("top", "bottom"))
    sided = [o for o in objs if abs(o[axis] - 0.5) > 0.1]
    if sided:
        o = rng.choice(sided)
        first, second = (lo, hi) if rng.random() < 0.5 else (hi, lo)
        where = "on the" if horizontal else "at the"
        qs.append(qa(f"Is the {o['colour']} {o['shape']} {where} {first} or {where} {second}?",
                     lo if o[axis] < 0.5 else hi, "where", "word"))
    if n >= 2:
        a, b = rng.sample(objs, 2)
        if max(a["r"], b["r"]) >= 1.25 * min(a["r"], b["r"]):
            big = a if a["r"] > b["r"] else b
            qs.append(qa(f"Which is bigger, the {a['colour']} {a['shape']} or the {b['colour']} {b['shape']}?",
                         f"{big['colour']} {big['shape']}", "bigger", "text"))
    return img, qs, {"objects": objs}


def sign_text(rng):
    return rng.choice(WORDS) if rng.random() < 0.6 else str(rng.randint(1, 999))


def ocr_sample(rng, small):
    while True:
        w, h = image_size(rng, small)
        n = 1 if rng.random() < 0.5 else 2
        texts = []
        while len(texts) < n:
            t = sign_text(rng)
            if t not in texts:
                texts.append(t)
        # Text height 14..32 px (`SIGN_TEXT`), capped by the image (small against large images).
        size = int(min(rng.uniform(SIGN_TEXT[0], SIGN_TEXT[1]), SIGN_TEXT[2] * min(w, h)))
        if size < 10:
            continue
        f = font(size)
        boxes = []
        for t in texts:
            x0, y0, x1, y1 = f.getbbox(t)
            pad = max(4, size // 3)
            boxes.append((x1 - x0 + 2 * pad, y1 - y0 + 2 * pad, pad, x0, y0))
        spots = place(rng, w, h, [0.5 * math.hypot(bw, bh) for (bw, bh, *_) in boxes])
        if spots is not None:
            break
    img = background(rng, w, h)
    d = ImageDraw.Draw(img)
    # A few small distractor shapes.
    for _ in range(rng.randint(0, 3)):
        r = rng.uniform(5, 0.08 * min(w, h) + 6)
        cx, cy = rng.uniform(0, w), rng.uniform(0, h)
        if all(math.hypot(cx - x, cy - y) > r + q for (x, y, q) in spots):
            draw_shape(d, rng.choice(SHAPES), cx, cy, r, COLOURS[rng.choice(list(COLOURS))])
    sign_colours = rng.sample(list(COLOURS), n)
    qs, origins = [], []
    for t, (bw, bh, pad, x0, y0), (cx, cy, _), c in zip(texts, boxes, spots, sign_colours):
        left, top = cx - bw / 2, cy - bh / 2
        border = max(2, size // 8)
        d.rectangle([left, top, left + bw, top + bh], fill=COLOURS[c])
        d.rectangle([left + border, top + border, left + bw - border, top + bh - border], fill=(255, 255, 255))
        origins.append((left + pad - x0, top + pad - y0))
        d.text(origins[-1], t, font=f, fill=(0, 0, 0))
        which = "the sign" if n == 1 else f"the {c} sign"
        qs.append(qa(f"What does {which} say?", t, "read", "text"))
    return img, qs, {"texts": texts, "sign_colours": sign_colours, "font_px": size, "text_origins": origins}


def char_boxes(meta):
    """Each sign character's box in image pixels, as (character, x0, y0, x1, y1): the pen advance of the text
    before it and after it across, the drawn text's height (Pillow's metrics of the font the sign used)."""
    f = font(meta["font_px"])
    out = []
    for t, (ox, oy) in zip(meta["texts"], meta["text_origins"]):
        _, y0, _, y1 = f.getbbox(t)
        for i, ch in enumerate(t):
            out.append((ch, ox + f.getlength(t[:i]), oy + y0, ox + f.getlength(t[:i + 1]), oy + y1))
    return out


def chart_sample(rng, small):
    w, h = image_size(rng, small)
    n = rng.randint(3, 6)
    labels = rng.sample(LETTERS, n)
    # Distinct heights; the highest and lowest stand out by at least 8% of the axis.
    while True:
        vals = [rng.uniform(0.1, 1.0) for _ in range(n)]
        s = sorted(vals)
        if s[-1] - s[-2] >= 0.08 and s[1] - s[0] >= 0.08:
            break
    img = Image.new("RGB", (w, h), (255, 255, 255))
    d = ImageDraw.Draw(img)
    size = max(10, int(min(rng.uniform(12, 28), 0.12 * h, 0.5 * w / n)))
    f = font(size)
    left, right = 0.06 * w, 0.96 * w
    top, bottom = 0.06 * h, h - 1.6 * size - 0.04 * h
    d.line([(left, bottom), (right, bottom)], fill=(0, 0, 0), width=max(1, size // 10))
    d.line([(left, top), (left, bottom)], fill=(0, 0, 0), width=max(1, size // 10))
    slot = (right - left) / n
    colour = COLOURS[rng.choice(list(COLOURS))] if rng.random() < 0.5 else None
    for k, (lab, v) in enumerate(zip(labels, vals)):
        x0 = left + k * slot + 0.2 * slot
        x1 = left + (k + 1) * slot - 0.2 * slot
        y0 = bottom - v * (bottom - top)
        fill = colour or COLOURS[list(COLOURS)[k % len(COLOURS)]]
        d.rectangle([x0, y0, x1, bottom], fill=fill)
        bx0, by0, bx1, _ = f.getbbox(lab)
        d.text(((x0 + x1) / 2 - (bx1 - bx0) / 2 - bx0, bottom + 0.3 * size - by0), lab, font=f, fill=(0, 0, 0))
    hi, lo = labels[vals.index(max(vals))], labels[vals.index(min(vals))]
    qs = [qa("Which bar is the highest?", hi, "highest", "word"),
          qa("Which bar is the lowest?", lo, "lowest", "word")]
    rng.shuffle(qs)
    return img, qs, {"labels": labels, "values": vals}


MAKERS = {"shapes": shapes_sample, "ocr": ocr_sample, "chart": chart_sample}


def sample(split, task, index, small=False):
    """(PIL RGB image, [{"question", "answer", "type"}], metadata) of one sample."""
    rng = rng_for(split, task, index)
    img, qs, meta = MAKERS[task](rng, small)
    return img, qs, meta


NUMBER_WORDS = {"zero": "0", "one": "1", "two": "2", "three": "3", "four": "4", "five": "5", "six": "6",
                "seven": "7", "eight": "8", "nine": "9", "ten": "10"}


def normalise(text):
    """The answer as compared: lower case, first line, outer spaces and final punctuation off,
    a leading "the " dropped, number words as digits."""
    t = text.strip().split("\n")[0].strip().lower()
    t = t.rstrip(".!?,;: ").strip().strip("\"'").strip()
    if t.startswith("the "):
        t = t[4:]
    return NUMBER_WORDS.get(t, t)


OPTIONS = {"colour": list(COLOURS), "shape": list(SHAPES), "where": ["left", "right", "top", "bottom"],
           "count": [str(k) for k in range(1, 6)]}


def first_line_words(text):
    """The first line of a text as its lower-case words (punctuation dropped, number words as digits),
    space-separated with a space at each end, so that `f" {w} " in first_line_words(text)` finds a whole word."""
    t = "".join(ch if ch.isalnum() else " " for ch in text.strip().split("\n")[0].lower())
    return " " + " ".join(NUMBER_WORDS.get(w, w) for w in t.split()) + " "


def lenient(text, answer, kind):
    """A looser score, for the verbose text-only baseline: the answer's words appear in the first
    line of the text and, for a question with a closed set of answers, no other answer does
    (chart letters and signs are scored strictly: a lone letter is too often an article)."""
    t = first_line_words(text)
    words = normalise(answer)
    if kind not in OPTIONS and kind != "bigger":
        return normalise(text) == words
    if f" {words} " not in t:
        return False
    others = {NUMBER_WORDS.get(o, o) for o in OPTIONS.get(kind, [])} - {words}
    return not any(f" {o} " in t for o in others)


def contains(text, answer):
    """Whether the answer's words appear in the first line of the text, read as the lenient score reads it (a
    sign's text copied inside a sentence, 'The sign says "535" and ...', which the strict and lenient scores of a
    sign count as wrong)."""
    return f" {normalise(answer)} " in first_line_words(text)


def tally(score, q, answer):
    """Counts one answer to question `q` into `score[q["type"]]`: strict, lenient and `contains` hits, questions."""
    s = score.setdefault(q["type"], {"strict": 0, "lenient": 0, "contains": 0, "questions": 0})
    s["questions"] += 1
    s["strict"] += int(normalise(answer) == normalise(q["answer"]))
    s["lenient"] += int(lenient(answer, q["answer"], q["type"]))
    s["contains"] += int(contains(answer, q["answer"]))

if __name__ == "__main__":
    import os
    import sys
    out = sys.argv[1] if len(sys.argv) > 1 else "/tmp/vqa-samples"
    os.makedirs(out, exist_ok=True)
    for task in TASKS:
        for i in range(4):
            img, qs, _ = sample("train", task, i)
            img.save(os.path.join(out, f"{task}{i}.png"))
            print(task, i, img.size, [(q["question"], q["answer"]) for q in qs])
