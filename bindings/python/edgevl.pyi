"""edgevl: on-device multimodal LLM inference (BlueLM-V-3B's design) from Python.

Load a model once with `Model`, answer OpenAI-style messages with `Model.chat` (images as
paths, numpy arrays or PIL images; whole or streamed), keep a multi-turn conversation in its KV
cache with `Model.session()`, and look at the tiling (`tiles`) and the image embeddings
(`Model.encode_image`). Every default is `edgevl run`'s. Generation releases the GIL; Ctrl-C
(KeyboardInterrupt) stops it cleanly. See docs/python.md.
"""

import os
from typing import Callable, Iterator, Literal, Mapping, Sequence, TypedDict, Union

import numpy as np
import numpy.typing as npt
import PIL.Image
from typing_extensions import Unpack

__version__: str
MEDIA_MARKER: str
"""`<__media__>`: where an image goes in a user message (without one, images go in front)."""

class EdgevlError(Exception):
    """Base class of the errors edgevl raises; the message is the library's."""

class ModelFileError(EdgevlError):
    """A model or mmproj file is missing, unreadable, corrupt or not of a supported kind."""

class ImageError(EdgevlError):
    """An image could not be read, decoded, planned or encoded."""

class ContextFullError(EdgevlError):
    """The input does not fit what is left of the context."""

# A path, the bytes of an image file (PNG, JPEG, WebP, BMP, GIF), a numpy HxWx3 uint8 RGB
# array, or a PIL image (converted with .convert("RGB"); EXIF orientation is applied to files
# and bytes only: use PIL.ImageOps.exif_transpose first for a PIL image).
Image = Union[str, "os.PathLike[str]", bytes, npt.NDArray[np.uint8], PIL.Image.Image]

Strategy = Literal["family", "relaxed", "llava-next", "internvl", "idefics3"]
Family = Literal["edgevl", "internvl", "idefics3"]
Finish = Literal["eog", "length", "context_full", "cancelled"]

class TextPart(TypedDict):
    type: Literal["text"]
    text: str

class Message(TypedDict):
    role: Literal["system", "developer", "user", "assistant"]
    content: Union[str, Sequence[TextPart], None]

class GenOptions(TypedDict, total=False):
    """The keyword options of `Model.chat` and `Session.ask`; defaults as `edgevl run`'s."""

    max_tokens: int | None
    """Tokens to generate at most (128); None = up to the end of the context."""
    temperature: float
    """0.8; 0 = greedy."""
    top_p: float
    """0.95"""
    top_k: int
    """40 (0 = off)"""
    min_p: float
    """0.05"""
    repeat_penalty: float
    """1.0 (off), over the last 64 tokens"""
    frequency_penalty: float
    """0.0 (off); subtracted from a token's logit for each time it is in the last 64 tokens"""
    presence_penalty: float
    """0.0 (off); subtracted from a token's logit when it is in the last 64 tokens"""
    seed: int | None
    """None or -1: a new random seed each call (as `edgevl run` without --seed); 0 to 2**64-1 repeats."""
    progress: Callable[[str, int, int], object] | None
    """Called on the calling thread with (step, done, total) while the turn waits for its images
    ("image", views encoded; an image encoded ahead reports from where it has got to) and prefills
    ("prefill", prompt positions computed); an exception it raises stops the reply, as Ctrl-C
    does, and is raised."""
    stream: bool
    """False; True returns a TextStream of the reply's pieces."""

class TilePlan(TypedDict):
    """One object of `edgevl tiles --json`."""

    strategy: str
    grid: list[int]
    """[cols, rows]"""
    canvas: list[int]
    """[width, height] in pixels"""
    tiles: int
    thumbnail: bool
    """True when a global view is added to the tiles."""
    tokens: int

class ImageInfo(TilePlan):
    """What `Session.add_image` put in the next message."""

    label: str
    cached: bool
    """True when the embeddings were already cached (the ViT does not run again)."""

def tiles(
    width: int,
    height: int,
    strategy: Strategy = "family",
    family: Family | None = None,
    max_tiles: int | None = None,
    alpha: float = 0.1,
) -> TilePlan:
    """The tile grid a strategy picks for a `width` x `height` image and its image-token cost:
    the same dict as one object of `edgevl tiles --json [--family F] --strategy S`.

    `strategy="family"` is the family's own rule (edgevl: relaxed, internvl: internvl,
    idefics3: idefics3); `family` None is this project's layout (384-pixel tiles, 196 tokens a
    view). Bad arguments raise ValueError.
    """

class TextStream(Iterator[str]):
    """A reply being generated: iterate for its pieces (joined, they are the reply
    `stream=False` returns). Each step releases the GIL. `close()` (or a `with` block, or
    dropping it) stops it early; a session keeps the reply so far (stopped before its first
    piece was read, the question is taken back, its images attached again)."""

    def __iter__(self) -> "TextStream": ...
    def __next__(self) -> str: ...
    def close(self) -> None:
        """Stop generating; nothing happens once it has ended."""
    @property
    def finish(self) -> Finish | None:
        """Why it ended, None while it goes on."""
    def __enter__(self) -> "TextStream": ...
    def __exit__(self, *args: object) -> None: ...

class Session:
    """A multi-turn conversation (from `Model.session()`), kept in its own KV cache: a
    follow-up prefills only its new tokens. A new `ask` ends a stream still open on it."""

    def add_image(self, image: Image) -> ImageInfo:
        """Attach an image to the next `ask` (at its `<__media__>` markers, else in front of its
        text). Decoded and planned now (ImageError here for a bad image), encoded in the
        background at once; the same pixels and plan are never encoded twice."""
    def ask(self, text: str, **options: Unpack[GenOptions]) -> str | TextStream:
        """Ask `text` and generate the reply (the text, or with `stream=True` a TextStream).
        ContextFullError leaves the conversation as it was; Ctrl-C stops the reply, which is
        kept as far as it got (stopped before its first token, the question is taken back)."""
    def reset(self) -> None:
        """Forget the conversation and its images (the embedding cache stays)."""
    def stats(self) -> dict[str, object]:
        """The fields of `/stats` in `edgevl chat`: turns, n_ctx, n_past, tokens_left,
        prefilled_tokens_total, generated_tokens_total, load_ms, images, pending_images,
        vit_tiles_encoded, image_cache_hits, image_encode_ms, image_cache_entries,
        image_cache_mb, last_turn (a dict or None)."""
    @property
    def messages(self) -> list[dict[str, str]]:
        """The conversation so far ({"role", "content"}; images are `<__media__>` markers)."""

class Model:
    """A loaded LLM (GGUF) and, with `mmproj`, its vision encoder. Raises ModelFileError for a
    missing or bad file, ValueError for a bad setting. Thread-safe: concurrent `chat` calls run
    on separate KV caches."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        mmproj: str | os.PathLike[str] | None = None,
        threads: int | None = None,
        ctx: int | None = None,
        cache_type: Literal["f16", "f32", "q8_0"] = "f16",
        *,
        chunk: int = 128,
        strategy: Strategy = "family",
        alpha: float = 0.1,
        max_tiles: int | None = None,
        vit_batch: int = 4,
        image_cache_mb: int = 512,
        pipelined: bool = False,
        encode_ahead: bool = True,
    ) -> None:
        """`threads`: default the physical cores; `ctx`: default the model's, capped at 4096."""
    def chat(
        self,
        messages: Sequence[Message | Mapping[str, object]],
        images: Sequence[Image] | None = None,
        **options: Unpack[GenOptions],
    ) -> str | TextStream:
        """Answer OpenAI-style `messages`; `images` bind to the last user message, at its
        `<__media__>` markers or in front of its text. `max_tokens` None = to the end of the
        context; `temperature` 0 = greedy. Returns the reply, or a TextStream with
        `stream=True`."""
    def session(self, system: str | None = None) -> Session:
        """A new conversation with its own KV cache (`n_ctx` positions), sharing the weights,
        threads and image embedding cache."""
    def encode_image(
        self,
        image: Image,
        strategy: Strategy = "family",
        max_tiles: int | None = None,
        progress: Callable[[str, int, int], object] | None = None,
    ) -> npt.NDArray[np.float32]:
        """The image's projected embeddings `[tokens, d]` as the prompt gets them, equal bit
        for bit to `edgevl encode-image --npy` (same threads, ViT batch, SIMD level).
        `progress("image", done, total)` is called on this thread as the views are encoded."""
    @property
    def path(self) -> str: ...
    @property
    def mmproj(self) -> str | None: ...
    @property
    def family(self) -> Family | None:
        """The mmproj's vision family (None for a text model)."""
    @property
    def n_ctx(self) -> int: ...
    @property
    def threads(self) -> int: ...
    @property
    def load_ms(self) -> float: ...
