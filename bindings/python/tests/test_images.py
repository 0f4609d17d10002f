"""Images on the tiny VLMs against the CLI: `encode_image` equals `edgevl encode-image --npy` bit
for bit (same threads, ViT batch, SIMD level) for each family and several strategies, from a path,
numpy or PIL; a second `add_image` of the same picture encodes 0 tiles; a chat about an image is
`edgevl run --image`'s reply."""

import numpy as np
import pytest
from PIL import Image

import edgevl
from conftest import THREADS, TINY_LLM, TINY_MMPROJ, WIDE_PNG, cli, fixture

FAMILIES = {
    # family: (LLM, mmproj, image, the other strategies to try)
    "edgevl": (TINY_LLM, TINY_MMPROJ, WIDE_PNG, ["relaxed", "llava-next", "internvl", "idefics3"]),
    "internvl": (fixture("tiny-internvl/model.gguf"), fixture("tiny-internvl/mmproj.gguf"),
                 fixture("vision/pipeline/input_internvl.png"), ["relaxed"]),
}


def cli_embeddings(tmp_path, mmproj: str, image: str, *flags: str) -> np.ndarray:
    out = tmp_path / "emb.npy"
    cli("encode-image", "--mmproj", mmproj, "--image", image, "-t", str(THREADS), "--vit-batch", "4",
        "--npy", str(out), *flags)
    return np.load(out)


def assert_bitwise_equal(got: np.ndarray, want: np.ndarray):
    assert got.dtype == np.float32 and got.shape == want.shape
    assert got.tobytes() == want.tobytes()


@pytest.mark.parametrize("family", FAMILIES)
def test_encode_image_equals_cli_bit_for_bit(tmp_path, family):
    llm, mmproj, image, strategies = FAMILIES[family]
    model = edgevl.Model(llm, mmproj=mmproj, threads=THREADS, ctx=4096, vit_batch=4)
    assert model.family == family
    want = cli_embeddings(tmp_path, mmproj, image)
    got = model.encode_image(image)
    assert got.shape[0] > model.encode_image(image, max_tiles=1).shape[0]
    assert_bitwise_equal(got, want)
    for strategy in strategies:
        assert_bitwise_equal(model.encode_image(image, strategy=strategy),
                             cli_embeddings(tmp_path, mmproj, image, "--strategy", strategy))
    assert_bitwise_equal(model.encode_image(image, max_tiles=2),
                         cli_embeddings(tmp_path, mmproj, image, "--max-tiles", "2"))
    # The same pixels as numpy and PIL (the PNGs have no EXIF orientation).
    pil = Image.open(image)
    assert_bitwise_equal(model.encode_image(np.asarray(pil.convert("RGB"))), want)
    assert_bitwise_equal(model.encode_image(pil), want)
    with open(image, "rb") as f:
        data = f.read()
    assert_bitwise_equal(model.encode_image(data), want)
    # A file's bytes as a bytearray or memoryview (they were a TypeError).
    assert_bitwise_equal(model.encode_image(bytearray(data)), want)
    assert_bitwise_equal(model.encode_image(memoryview(data)), want)


def test_second_add_image_encodes_zero_tiles():
    model = edgevl.Model(TINY_LLM, mmproj=TINY_MMPROJ, threads=THREADS, ctx=4096)
    s = model.session()
    first = s.add_image(WIDE_PNG)
    views = first["tiles"] + first["thumbnail"]
    assert views > 1 and first["tokens"] == views * 196 and not first["cached"]
    s.ask("What is it?", temperature=0, max_tokens=2)
    after_first = s.stats()
    assert after_first["vit_tiles_encoded"] == views
    assert after_first["last_turn"]["image_tokens"] == first["tokens"]

    second = s.add_image(WIDE_PNG)
    assert second["cached"]
    s.ask("And this one?", temperature=0, max_tokens=2)
    stats = s.stats()
    assert stats["vit_tiles_encoded"] == views  # 0 tiles encoded for the second
    assert stats["image_cache_hits"] == after_first["image_cache_hits"] + 1
    assert stats["images"] == 2
    # The same pixels from numpy are the same image.
    assert s.add_image(np.asarray(Image.open(WIDE_PNG).convert("RGB")))["cached"]
    assert s.stats()["vit_tiles_encoded"] == views


def test_chat_about_an_image_equals_edgevl_run(vlm):
    prompt = f"What is in {edgevl.MEDIA_MARKER}? Say it."
    want = cli("run", "-m", TINY_LLM, "--mmproj", TINY_MMPROJ, "--image", WIDE_PNG, "-p", prompt,
               "--temp", "0", "-n", "12", "-t", str(THREADS), "-c", "4096")[:-1]
    messages = [{"role": "user", "content": prompt}]
    for image in [WIDE_PNG, Image.open(WIDE_PNG), np.asarray(Image.open(WIDE_PNG).convert("RGB"))]:
        assert vlm.chat(messages, images=[image], temperature=0, max_tokens=12) == want
    # Without a marker the image goes in front of the text: `edgevl run` does the same.
    plain = "Describe the picture."
    want_front = cli("run", "-m", TINY_LLM, "--mmproj", TINY_MMPROJ, "--image", WIDE_PNG, "-p", plain,
                     "--temp", "0", "-n", "12", "-t", str(THREADS), "-c", "4096")[:-1]
    got = vlm.chat([{"role": "user", "content": plain}], images=[WIDE_PNG], temperature=0, max_tokens=12)
    assert got == want_front
    session = vlm.session()
    session.add_image(WIDE_PNG)
    assert session.ask(plain, temperature=0, max_tokens=12) == want_front
    assert session.messages[0]["content"] == edgevl.MEDIA_MARKER + plain


def bilevel_png(trns: int) -> bytes:
    """A 1-bit greyscale PNG, 16x8, half black and half white in stripes, whose tRNS names `trns`."""
    import struct
    import zlib

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    rows = b"".join(b"\x00" + (b"\xf0\x0f" if y % 2 else b"\x0f\xf0") for y in range(8))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 16, 8, 1, 0, 0, 0, 0))
            + chunk(b"tRNS", struct.pack(">H", trns)) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))


def test_a_bilevel_png_whose_black_is_transparent_is_painted_white(tmp_path):
    # transformers' convert_to_rgb composites what Pillow keeps in info["transparency"] onto white:
    # a 1-bit image's tRNS 0 marks black, so the whole image turns white; tRNS 1 changes nothing.
    import io

    model = edgevl.Model(fixture("tiny-internvl/model.gguf"), mmproj=fixture("tiny-internvl/mmproj.gguf"),
                         threads=THREADS, ctx=4096, vit_batch=4)
    white = model.encode_image(np.full((8, 16, 3), 255, np.uint8))
    for trns, painted in [(0, True), (1, False)]:
        path = tmp_path / f"bilevel_{trns}.png"
        path.write_bytes(bilevel_png(trns))
        pil = Image.open(io.BytesIO(bilevel_png(trns)))
        plain = np.asarray(pil.convert("RGB"))
        assert 0 < (plain == 0).mean() < 1
        want = white if painted else model.encode_image(plain)
        assert_bitwise_equal(model.encode_image(str(path)), want)
        assert_bitwise_equal(model.encode_image(pil), want)


@pytest.mark.parametrize("name", ["palette_trns.png", "small_frame_transparent.gif"])
def test_a_pil_image_with_a_transparent_colour_encodes_as_its_file(name):
    # InternVL's processor paints the colour Pillow keeps in info["transparency"] white; the file
    # loader keeps it, and so does a PIL image of the file (it was dropped: the colour stayed).
    path = fixture(f"vision/modes/{name}")
    model = edgevl.Model(fixture("tiny-internvl/model.gguf"), mmproj=fixture("tiny-internvl/mmproj.gguf"),
                         threads=THREADS, ctx=4096, vit_batch=4)
    want = model.encode_image(path)
    pil = Image.open(path)
    assert pil.convert("RGB").info.get("transparency") is not None
    assert_bitwise_equal(model.encode_image(pil), want)
    # Its pixels alone, as numpy, are another image: the colour is not painted.
    assert model.encode_image(np.asarray(pil.convert("RGB"))).tobytes() != want.tobytes()
