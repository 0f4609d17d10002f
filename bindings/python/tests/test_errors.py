"""Bad inputs raise the right exception with the library's message, never a crash, and leave
the model usable: missing or corrupt model files (ModelFileError), missing, corrupt or
undecodable images (ImageError), a prompt past the context (ContextFullError), and wrong
arguments (ValueError, TypeError)."""

import os
import shutil
import time

import numpy as np
import pytest

import edgevl
from conftest import FIXTURES, THREADS, TINY_LLM, TINY_MMPROJ, WIDE_PNG

BAD_IMAGES = ["bad/empty.png", "bad/text.png", "bad/truncated.jpg", "bad/bomb.png", "bad/zero_width.png"]


def test_exception_classes():
    for cls in (edgevl.ModelFileError, edgevl.ImageError, edgevl.ContextFullError):
        assert issubclass(cls, edgevl.EdgevlError) and issubclass(cls, Exception)


def test_the_kernel_overrides_of_the_cli_are_read(monkeypatch):
    # EDGEVL_MAX_SIMD and the others were ignored by the bindings: a bad value loaded anyway.
    monkeypatch.setenv("EDGEVL_MAX_SIMD", "bogus")
    with pytest.raises(ValueError, match="EDGEVL_MAX_SIMD"):
        edgevl.Model(TINY_LLM, threads=THREADS)
    monkeypatch.setenv("EDGEVL_MAX_SIMD", "scalar")
    reply = edgevl.Model(TINY_LLM, threads=THREADS).chat([{"role": "user", "content": "Hi"}], max_tokens=2, temperature=0)
    assert isinstance(reply, str)


def test_missing_or_corrupt_model_files(tmp_path):
    with pytest.raises(edgevl.ModelFileError, match="/nonexistent/model.gguf"):
        edgevl.Model("/nonexistent/model.gguf")
    garbage = tmp_path / "garbage.gguf"
    garbage.write_bytes(b"not a gguf file at all" * 10)
    with pytest.raises(edgevl.ModelFileError, match="garbage.gguf"):
        edgevl.Model(garbage)
    truncated = tmp_path / "truncated.gguf"
    truncated.write_bytes(open(TINY_LLM, "rb").read()[:3000])
    with pytest.raises(edgevl.ModelFileError, match="truncated.gguf"):
        edgevl.Model(truncated)
    with pytest.raises(edgevl.ModelFileError):
        edgevl.Model(tmp_path)  # a directory
    # An LLM is not an mmproj, and the message says so (it named a missing key).
    with pytest.raises(edgevl.ModelFileError, match="a language model's file .* not an mmproj"):
        edgevl.Model(TINY_LLM, mmproj=TINY_LLM, threads=THREADS)
    with pytest.raises(edgevl.ModelFileError, match="an mmproj .* not a language model"):
        edgevl.Model(TINY_MMPROJ, threads=THREADS)
    with pytest.raises(edgevl.ModelFileError, match="/nonexistent/mmproj.gguf"):
        edgevl.Model(TINY_LLM, mmproj="/nonexistent/mmproj.gguf", threads=THREADS)


def test_bad_settings():
    with pytest.raises(ValueError, match="cache_type"):
        edgevl.Model(TINY_LLM, cache_type="f8")
    with pytest.raises(ValueError):
        edgevl.Model(TINY_LLM, threads=0)
    with pytest.raises(ValueError, match="strategy"):
        edgevl.Model(TINY_LLM, mmproj=TINY_MMPROJ, strategy="bogus")
    with pytest.raises(ValueError, match="thread count"):
        edgevl.Model(TINY_LLM, threads=30000)
    # The CLI's bound on views per ViT batch holds here too (2**62 views overflowed the batch's size).
    for bad in (0, 65, 2**62):
        with pytest.raises(ValueError, match="ViT batch size"):
            edgevl.Model(TINY_LLM, mmproj=TINY_MMPROJ, vit_batch=bad)
    # Image settings without an mmproj were taken and ignored (vit_batch=0 loaded), as the CLI's were.
    for setting in ({"vit_batch": 0}, {"strategy": "relaxed"}, {"encode_ahead": False}, {"max_tiles": 4}):
        with pytest.raises(ValueError, match="needs mmproj="):
            edgevl.Model(TINY_LLM, **setting)


def test_special_files_and_settings_the_sampler_cannot_use(vlm, tmp_path):
    # A FIFO would block the open until a writer came: refused before it is opened.
    fifo = tmp_path / "model.gguf"
    os.mkfifo(fifo)
    with pytest.raises(edgevl.ModelFileError, match="not a regular file"):
        edgevl.Model(fifo)
    s = vlm.session()
    for bad in ({"temperature": -1e39}, {"top_p": 2.0}, {"top_p": -1.0}, {"min_p": 2.0}, {"repeat_penalty": 0.0},
                {"frequency_penalty": float("nan")}, {"presence_penalty": float("inf")}):
        with pytest.raises(ValueError):
            s.ask("Hi", max_tokens=1, **bad)
    assert isinstance(s.ask("Hi", max_tokens=1, temperature=-1.0), str)  # <= 0 is greedy


def test_bad_images_raise_image_error(vlm, tmp_path):
    s = vlm.session()
    with pytest.raises(edgevl.ImageError, match="/nonexistent/photo.png"):
        s.add_image("/nonexistent/photo.png")
    for rel in BAD_IMAGES:
        path = FIXTURES / "vision" / rel
        with pytest.raises(edgevl.ImageError, match=path.name):
            s.add_image(path)
        with pytest.raises(edgevl.ImageError):
            vlm.encode_image(path.read_bytes())
        with pytest.raises(edgevl.ImageError):
            vlm.chat([{"role": "user", "content": "hi"}], images=[str(path)])
    renamed = tmp_path / "photo.jpg"  # a PNG called .jpg decodes by its content
    shutil.copy(WIDE_PNG, renamed)
    assert s.add_image(renamed)["tiles"] > 1
    with pytest.raises(TypeError, match="uint8"):
        s.add_image(np.zeros((8, 8, 3), dtype=np.float32))
    with pytest.raises(ValueError, match="shape"):
        s.add_image(np.zeros((8, 8), dtype=np.uint8))
    # Zero pixels is an ImageError, as an empty image file is (it was a ValueError).
    with pytest.raises(edgevl.ImageError):
        s.add_image(np.zeros((0, 8, 3), dtype=np.uint8))
    with pytest.raises(TypeError):
        s.add_image(42)
    # Pillow reads a truncated file's pixels only on convert: its OSError was raised as is.
    from PIL import Image

    with pytest.raises(edgevl.ImageError, match="Pillow cannot read the image"):
        s.add_image(Image.open(FIXTURES / "vision" / "bad" / "truncated.jpg"))
    assert s.stats()["pending_images"] == 1
    assert isinstance(s.ask("What is it?", temperature=0, max_tokens=2), str)


def test_a_prompt_past_the_context_raises_context_full_error():
    model = edgevl.Model(TINY_LLM, threads=THREADS, ctx=256)
    long = "one two three four five six seven eight nine ten " * 40
    with pytest.raises(edgevl.ContextFullError, match="256-token context") as first:
        model.chat([{"role": "user", "content": long}])
    # The same request after another chat on the pooled cache: the same numbers, no advice to reset
    # (it named a reset() Model has not, and counted from what that cache held).
    assert isinstance(model.chat([{"role": "user", "content": "Hi"}], max_tokens=2), str)
    with pytest.raises(edgevl.ContextFullError) as again:
        model.chat([{"role": "user", "content": long}])
    assert str(again.value) == str(first.value) and "reset" not in str(again.value)
    s = model.session()
    s.ask("Hi", temperature=0, max_tokens=4)
    before = s.messages
    with pytest.raises(edgevl.ContextFullError):
        s.ask(long)
    assert s.messages == before  # the message was taken back
    with pytest.raises(edgevl.ContextFullError):
        s.ask(long, stream=True)
    assert isinstance(s.ask("Hello again", temperature=0, max_tokens=4), str)
    # An image too large for the context.
    vlm = edgevl.Model(TINY_LLM, mmproj=TINY_MMPROJ, threads=THREADS, ctx=256)
    with pytest.raises(edgevl.ContextFullError):
        vlm.chat([{"role": "user", "content": "What is it?"}], images=[WIDE_PNG])


def test_wrong_use_raises_and_the_model_goes_on(vlm):
    text_model = edgevl.Model(TINY_LLM, threads=THREADS)
    with pytest.raises(edgevl.EdgevlError, match="mmproj"):
        text_model.chat([{"role": "user", "content": "hi"}], images=[WIDE_PNG])
    with pytest.raises(edgevl.EdgevlError, match="mmproj"):
        text_model.encode_image(WIDE_PNG)
    with pytest.raises(edgevl.EdgevlError, match="mmproj"):
        text_model.session().add_image(WIDE_PNG)
    with pytest.raises(TypeError):
        vlm.chat("hello")
    with pytest.raises(TypeError, match="list of images"):
        vlm.chat([{"role": "user", "content": "hi"}], images=WIDE_PNG)
    for one in (np.zeros((4, 4, 3), np.uint8), {WIDE_PNG: 1}):
        with pytest.raises(TypeError, match="list of images"):
            vlm.chat([{"role": "user", "content": "hi"}], images=one)
    # Pixels past the limit files get (Pillow's) are refused before they are copied (a view: no 546 MB here).
    huge = np.broadcast_to(np.zeros((1, 1, 3), np.uint8), (14000, 13000, 3))
    with pytest.raises(edgevl.ImageError, match="182000000 pixels"):
        vlm.encode_image(huge)
    with pytest.raises(ValueError, match="role"):
        vlm.chat([{"role": "tool", "content": "x"}])
    with pytest.raises(ValueError, match="no \"role\""):
        vlm.chat([{"content": "x"}])
    with pytest.raises(TypeError, match=r"messages\[0\].role must be a str, not int"):
        vlm.chat([{"role": 1, "content": "x"}])
    for content in (5, b"hi", {"type": "text", "text": "x"}, ["x"]):
        with pytest.raises(TypeError, match=r"messages\[0\].content must be a str or a list"):
            vlm.chat([{"role": "user", "content": content}])
    with pytest.raises(ValueError, match=r"messages\[0\].content\[0\] has no \"text\""):
        vlm.chat([{"role": "user", "content": [{"type": "text"}]}])
    for parts in (({"type": "text", "text": "hi"},), (p for p in [{"type": "text", "text": "hi"}])):
        assert isinstance(vlm.chat([{"role": "user", "content": parts}], max_tokens=1), str)
    with pytest.raises(ValueError, match="empty"):
        vlm.chat([])
    with pytest.raises(ValueError, match="marker"):
        vlm.chat([{"role": "user", "content": f"{edgevl.MEDIA_MARKER} {edgevl.MEDIA_MARKER}"}], images=[WIDE_PNG])
    with pytest.raises(ValueError, match="image_url"):
        vlm.chat([{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}])
    with pytest.raises(ValueError, match="temperature"):
        vlm.chat([{"role": "user", "content": "hi"}], temperature=float("nan"))
    with pytest.raises(TypeError, match="max_token"):
        vlm.chat([{"role": "user", "content": "hi"}], max_token=3)
    with pytest.raises(ValueError, match="max_tokens"):
        vlm.session().ask("hi", max_tokens=-1)
    with pytest.raises(ValueError, match="strategy"):
        vlm.encode_image(WIDE_PNG, strategy="bogus")
    # Markers and images that do not match are a ValueError wherever the library finds them (they were
    # EdgevlError but for the last user message's own check).
    s = vlm.session()
    s.add_image(WIDE_PNG)
    with pytest.raises(ValueError, match="2 <__media__> marker"):
        s.ask(f"a {edgevl.MEDIA_MARKER} b {edgevl.MEDIA_MARKER}")
    for messages in ([{"role": "user", "content": f"look {edgevl.MEDIA_MARKER}"}],
                     [{"role": "system", "content": edgevl.MEDIA_MARKER}, {"role": "user", "content": "y"}]):
        with pytest.raises(ValueError, match="marker"):
            vlm.chat(messages)
    # A tile budget the tiling refuses is a bad argument, as in tiles(), not a bad image.
    for budget in (0, 1000):
        with pytest.raises(ValueError, match="max_tiles"):
            vlm.encode_image(WIDE_PNG, max_tiles=budget)
    # Negative counts are a ValueError, not an OverflowError; seed -1 is a random seed, as in llama-cpp-python.
    for bad in ({"top_k": -1}, {"seed": -2}, {"seed": 2**64}):
        with pytest.raises(ValueError, match="top_k|seed"):
            vlm.chat([{"role": "user", "content": "hi"}], max_tokens=1, **bad)
    assert isinstance(vlm.chat([{"role": "user", "content": "hi"}], max_tokens=1, seed=-1), str)
    with pytest.raises(ValueError, match="width"):
        edgevl.tiles(-1, 5)
    with pytest.raises(ValueError, match="max_tiles"):
        vlm.encode_image(WIDE_PNG, max_tiles=-1)
    for bad in ({"threads": -1}, {"image_cache_mb": -1}, {"ctx": -5}):
        with pytest.raises(ValueError, match=next(iter(bad))):
            edgevl.Model(TINY_LLM, **bad)
    # A str that is not UTF-8 is a UnicodeEncodeError wherever it is (a role said "must be a str, not str").
    for messages in ([{"role": "us\udc80er", "content": "ab"}],
                     [{"role": "user", "content": [{"type": "text", "text": "a\ud800"}]}]):
        with pytest.raises(UnicodeEncodeError):
            vlm.chat(messages)
    assert isinstance(vlm.chat([{"role": "user", "content": "hi"}], temperature=0, max_tokens=3), str)


def test_tiling_settings_are_checked_at_load():
    for bad in ({"alpha": float("nan")}, {"alpha": -1.0}, {"max_tiles": 0}, {"max_tiles": 100000}):
        with pytest.raises(ValueError, match="tiling|tile"):
            edgevl.Model(TINY_LLM, mmproj=TINY_MMPROJ, threads=THREADS, **bad)


def test_images_past_the_context_are_refused_before_encoding():
    m = edgevl.Model(TINY_LLM, mmproj=TINY_MMPROJ, threads=THREADS, ctx=256)
    images = [np.full((600, 900, 3), i, np.uint8) for i in range(6)]
    with pytest.raises(edgevl.ContextFullError, match="at least"):
        m.chat([{"role": "user", "content": "What is this?"}], images=images)
    time.sleep(1)  # had they been queued, the tiny encoder would have run views by now
    assert m.session().stats()["vit_tiles_encoded"] == 0
    # Added to a session: refused at add_image (it was attached, encoded, and failed every later
    # ask until a reset lost the conversation).
    s = m.session()
    assert isinstance(s.ask("Hi", temperature=0, max_tokens=3), str)
    with pytest.raises(edgevl.ContextFullError, match="at least"):
        s.add_image(WIDE_PNG)
    assert s.stats()["pending_images"] == 0
    assert isinstance(s.ask("Just text now", temperature=0, max_tokens=3), str)
    # A marker in a session's system message could never be matched by an image.
    with pytest.raises(ValueError, match="system message holds"):
        m.session(system="Look: " + edgevl.MEDIA_MARKER)


def test_images_in_a_forked_child_raise_instead_of_hanging(vlm):
    vlm.encode_image(WIDE_PNG)
    pid = os.fork()
    if pid == 0:  # the child: no image worker thread here
        code = 3
        try:
            vlm.encode_image(WIDE_PNG, max_tiles=2)
        except edgevl.EdgevlError as e:
            code = 0 if "forked" in str(e) else 4
        finally:
            os._exit(code)
    deadline = time.monotonic() + 60
    while (done := os.waitpid(pid, os.WNOHANG))[0] == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    if done[0] == 0:
        os.kill(pid, 9)
        os.waitpid(pid, 0)
        pytest.fail("the child's image call hung")
    assert os.waitstatus_to_exitcode(done[1]) == 0
