"""`progress=` on the tiny VLM: the turn's image views and prefill positions are told on the calling
thread, rising to their totals (the image's views, the positions `stats()` says were prefilled);
an exception the callback raises stops the reply and is raised, and the session goes on;
`encode_image` tells its views, none for cached embeddings."""

import threading

import numpy as np
import pytest

import edgevl
from conftest import THREADS, TINY_LLM, TINY_MMPROJ, WIDE_PNG


def recorder():
    events = []

    def progress(step, done, total):
        events.append((step, done, total, threading.get_ident()))

    return events, progress


def steps(events, name):
    return [(done, total) for step, done, total, _ in events if step == name]


def test_progress_rises_to_the_views_and_prefilled_positions():
    # Encoding ahead off: the turn queues the image when it starts waiting, so it sees every batch.
    model = edgevl.Model(TINY_LLM, mmproj=TINY_MMPROJ, threads=THREADS, ctx=4096, vit_batch=2,
                         encode_ahead=False)
    s = model.session()
    info = s.add_image(WIDE_PNG)
    views = info["tiles"] + info["thumbnail"]
    events, progress = recorder()
    s.ask("What is it?", temperature=0, max_tokens=2, progress=progress)
    assert {step for step, *_ in events} <= {"image", "prefill"}
    assert all(ident == threading.get_ident() for *_, ident in events)
    # From 0, a batch of two views at a time, to every view.
    image = steps(events, "image")
    assert image == [(min(done, views), views) for done in range(0, views + 2, 2)], image
    prefilled = s.stats()["last_turn"]["prefilled_tokens"]
    prefill = steps(events, "prefill")
    assert prefill[0] == (0, prefilled) and prefill[-1] == (prefilled, prefilled), prefill
    assert all(a[0] < b[0] for a, b in zip(prefill, prefill[1:])), prefill
    # Every image report comes before the prefill's.
    assert [step for step, *_ in events] == ["image"] * len(image) + ["prefill"] * len(prefill)

    # Model.chat and a stream tell the same kinds; an image already encoded has nothing to tell.
    events, progress = recorder()
    stream = model.chat([{"role": "user", "content": "And?"}], images=[WIDE_PNG], temperature=0,
                        max_tokens=2, stream=True, progress=progress)
    assert steps(events, "image") == []
    assert steps(events, "prefill")[-1][0] == steps(events, "prefill")[-1][1] > 0
    "".join(stream)


def test_an_exception_in_progress_stops_the_reply_and_is_raised():
    model = edgevl.Model(TINY_LLM, mmproj=TINY_MMPROJ, threads=THREADS, ctx=4096)
    s = model.session()
    s.add_image(WIDE_PNG)

    def stop(step, done, total):
        if step == "prefill" and done > 0:
            raise RuntimeError("enough")

    # No token limit: unless the exception stopped it, the turn would run to the end of the context
    # ("context_full", some 2,600 tokens).
    with pytest.raises(RuntimeError, match="enough"):
        s.ask("What is it?", temperature=0, max_tokens=None, progress=stop)
    last = s.stats()["last_turn"]
    assert last["finish"] == "cancelled", last
    # The session goes on, and no callback is kept.
    assert isinstance(s.ask("Again?", temperature=0, max_tokens=2), str)


def test_a_callable_may_use_its_session():
    model = edgevl.Model(TINY_LLM, mmproj=TINY_MMPROJ, threads=THREADS, ctx=4096)
    s = model.session()
    s.add_image(WIDE_PNG)
    seen = []

    def look(step, done, total):
        seen.append(s.stats()["n_past"])  # waits for the session's lock, which the prefill holds

    # In a daemon thread: a deadlock fails the join instead of hanging the test run.
    t = threading.Thread(target=lambda: s.ask("What is it?", temperature=0, max_tokens=2, progress=look),
                         daemon=True)
    t.start()
    t.join(120)
    assert not t.is_alive(), "ask did not return: the callable and the turn wait for each other"
    assert seen and s.stats()["last_turn"]["finish"] in ("eog", "length")


def test_encode_image_tells_the_views_unless_cached():
    # A context both session images fit (they are refused when attached otherwise).
    model = edgevl.Model(TINY_LLM, mmproj=TINY_MMPROJ, threads=THREADS, ctx=8192, vit_batch=2)
    # Two other images first (encoded at once, on the one encoder thread): the image below waits behind them, so
    # its wait starts before its first ViT batch, whatever the scheduler does in the tiny ViT's milliseconds.
    s = model.session()
    for seed in (1, 2):
        s.add_image(np.random.default_rng(seed).integers(0, 256, (900, 1400, 3), dtype=np.uint8))
    events, progress = recorder()
    rows = model.encode_image(WIDE_PNG, progress=progress)
    views = rows.shape[0] // 196
    image = steps(events, "image")
    assert {step for step, *_ in events} == {"image"}
    assert all(ident == threading.get_ident() for *_, ident in events)
    # From where the encoding had got to when the wait began (it starts at once), a batch of two at a time.
    assert image and image[-1] == (views, views), image
    assert all(total == views and (done % 2 == 0 or done == views) for done, total in image), image
    assert all(a[0] < b[0] for a, b in zip(image, image[1:])), image
    events.clear()
    assert model.encode_image(WIDE_PNG, progress=progress).tobytes() == rows.tobytes()
    assert events == []


def test_progress_must_be_callable():
    model = edgevl.Model(TINY_LLM, threads=THREADS)
    with pytest.raises(TypeError, match="progress must be a callable"):
        model.chat([{"role": "user", "content": "Hi"}], progress=3)
    vlm = edgevl.Model(TINY_LLM, mmproj=TINY_MMPROJ, threads=THREADS, ctx=4096)
    with pytest.raises(TypeError, match="progress must be a callable"):
        vlm.encode_image(WIDE_PNG, progress="no")
    assert isinstance(model.chat([{"role": "user", "content": "Hi"}], max_tokens=1, progress=None), str)
