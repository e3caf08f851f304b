"""The engine's entry points as the golden-hash test calls them (one place to follow an
engine refactor; the recorded hashes themselves never move with it)."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import parse_qsl

from imgpipe.domain.media import Limits
from imgpipe.domain.profiles import ProfileSet
from imgpipe.domain.render_options import parse_options
from imgpipe.engine.pipeline import Rendered, render_variants
from imgpipe.engine.probe import probe
from imgpipe.engine.render import render

LIMITS = Limits(max_upload_bytes=50 << 20, max_pixels=268_435_456, max_frames=500)


def profile_outputs(path: Path, profiles_file: Path) -> dict[str, bytes]:
    specs = [s for p in ProfileSet.from_toml(profiles_file).profiles.values() for s in p.variants()]
    result = render_variants(path, probe(path, LIMITS), specs)
    out: dict[str, bytes] = {}
    for name, outcome in result.outcomes.items():
        assert isinstance(outcome, Rendered), (name, outcome)
        out[name] = outcome.data
    return out


def render_output(path: Path, query: str) -> bytes:
    options = parse_options(parse_qsl(query))
    return render(path, probe(path, LIMITS), options, options.format).data


def builtin_outputs(path: Path) -> dict[str, bytes]:
    """The built-in profiles' variants (bench/golden_corpus.py)."""
    specs = [s for p in ProfileSet.builtin().profiles.values() for s in p.variants()]
    result = render_variants(path, probe(path, LIMITS), specs)
    return {n: o.data for n, o in result.outcomes.items() if isinstance(o, Rendered)}
