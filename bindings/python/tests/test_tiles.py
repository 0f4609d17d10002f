"""`edgevl.tiles` against `edgevl tiles --json`: for each family (and none), strategy, size and
budget, the dict is the CLI's object for that strategy; "family" is the family's own rule."""

import json

import pytest

import edgevl
from conftest import cli

SIZES = [(640, 480), (1920, 1080), (380, 76), (768, 1536), (100, 2000), (4032, 3024)]
OWN_RULE = {None: "relaxed", "edgevl": "relaxed", "internvl": "internvl", "idefics3": "idefics3"}


@pytest.mark.parametrize("family", list(OWN_RULE))
def test_tiles_equal_edgevl_tiles_json_for_each_strategy(family):
    for (w, h) in SIZES:
        for max_tiles, alpha in [(None, 0.1), (4, 0.1), (None, 0.3)]:
            args = ["tiles", "--size", f"{w}x{h}", "--strategy", "all", "--alpha", str(alpha), "--json"]
            if family is not None:
                args += ["--family", family]
            if max_tiles is not None:
                args += ["--max-tiles", str(max_tiles)]
            want = json.loads(cli(*args))
            assert [o["strategy"] for o in want] == ["relaxed", "llava-next", "internvl", "idefics3"]
            kw = dict(family=family, max_tiles=max_tiles, alpha=alpha)
            for obj in want:
                assert edgevl.tiles(w, h, strategy=obj["strategy"], **kw) == obj, (w, h, kw)
            own = next(o for o in want if o["strategy"] == OWN_RULE[family])
            assert edgevl.tiles(w, h, **kw) == own
            # The CLI takes "family" too (it was refused), with the same meaning.
            assert json.loads(cli(*[a if a != "all" else "family" for a in args])) == [own]


def test_bad_tiles_arguments_raise_value_error():
    for kw in [dict(width=0, height=10), dict(width=10, height=10, strategy="bogus"),
               dict(width=10, height=10, family="llava"), dict(width=10, height=10, max_tiles=0),
               dict(width=10, height=10, alpha=-1.0)]:
        with pytest.raises(ValueError):
            edgevl.tiles(**kw)
