"""Signed render URLs: the genuine one renders; 10,000 forgeries of it never do."""

from __future__ import annotations

import base64
from urllib.parse import parse_qsl, quote, urlsplit

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from imgpipe.domain.errors import BadSignature, Expired, ImgpipeError
from imgpipe.domain.render_options import split_render_path
from imgpipe.domain.signing import authorise_render, sign_render_url

KEY = b"current-key-0123456789"
PREVIOUS = b"previous-key-9876543210"
REMOVED = b"removed-key-5555555555"
ACCEPTED = (KEY, PREVIOUS)
NOW = 1_900_000_000.0
FUTURE = int(NOW) + 3600


def check(url: str, keys: tuple[bytes, ...] = ACCEPTED, now: float = NOW) -> object:
    """What the API does with a URL: authorise it (raises) or return its options."""
    parts = urlsplit(url)
    _, path_format = split_render_path(parts.path)
    return authorise_render(
        keys, parts.path, parse_qsl(parts.query, keep_blank_values=True), path_format, now
    )


def test_a_signed_url_is_accepted_with_the_current_or_a_previous_key() -> None:
    url = sign_render_url("/v1/render/img_a?h=200&w=300&crop=face&fit=cover", KEY)
    assert urlsplit(url).query.startswith("w=300&h=200&fit=cover&crop=face&sig=")
    check(url)
    check(sign_render_url("/v1/render/img_a.webp?w=300", PREVIOUS, FUTURE))
    assert check(url, keys=(KEY,)) == check(url)


def test_missing_wrong_expired_and_retired_signatures_are_refused() -> None:
    with pytest.raises(BadSignature):
        check("/v1/render/img_a?w=300")
    with pytest.raises(BadSignature):
        check(sign_render_url("/v1/render/img_a?w=300", REMOVED))
    expired = sign_render_url("/v1/render/img_a?w=300", KEY, int(NOW) - 1)
    with pytest.raises(Expired) as caught:
        check(expired)
    assert caught.value.code == "expired" and caught.value.status == 403
    with pytest.raises(BadSignature):  # valid for the old key set, not once that key is gone
        check(sign_render_url("/v1/render/img_a?w=300", PREVIOUS), keys=(KEY,))


# --- forgeries ------------------------------------------------------------------------------

OPTION_VALUES = {
    "w": st.integers(1, 4000).map(str),
    "h": st.integers(1, 4000).map(str),
    "fit": st.sampled_from(["cover", "contain", "fill"]),
    "crop": st.sampled_from(["attention", "entropy", "face"]),
    "format": st.sampled_from(["webp", "avif", "jpeg", "png"]),
    "q": st.integers(1, 100).map(str),
    "blur": st.sampled_from(["0.5", "2", "10"]),
    "rotate": st.sampled_from(["90", "180", "270"]),
    "flip": st.sampled_from(["h", "v", "hv"]),
    "bri": st.integers(-100, 100).filter(bool).map(str),
    "gray": st.just("1"),
    "wm": st.sampled_from(["logo,se,0.5", "mark,nw,0.25"]),
}


@st.composite
def genuine_urls(draw: st.DrawFn) -> str:
    names = draw(st.lists(st.sampled_from(sorted(OPTION_VALUES)), min_size=1, unique=True))
    query = "&".join(f"{n}={draw(OPTION_VALUES[n])}" for n in names)
    image = draw(st.sampled_from(["img_a", "img_b", "img_a.webp", "img_b.avif"]))
    if "." in image:
        query = "&".join(p for p in query.split("&") if not p.startswith("format="))
    exp = draw(st.sampled_from([None, FUTURE]))
    return sign_render_url(f"/v1/render/{image}?{query}", KEY, exp)


def _pairs(url: str) -> tuple[str, list[tuple[str, str]]]:
    parts = urlsplit(url)
    return parts.path, parse_qsl(parts.query, keep_blank_values=True)


def _url(path: str, pairs: list[tuple[str, str]]) -> str:
    return path + "?" + "&".join(f"{quote(k, safe='')}={quote(v, safe=',')}" for k, v in pairs)


def change_option(url: str, data: st.DataObject) -> str:
    path, pairs = _pairs(url)
    options = pairs[:-1]
    i = data.draw(st.integers(0, max(0, len(options) - 1)))
    unused = sorted(set(OPTION_VALUES) - {k for k, _ in options})
    if options and (not unused or data.draw(st.booleans())):
        name = options[i][0]
        strategy = OPTION_VALUES.get(name, st.just("1"))
        value = data.draw(strategy.filter(lambda v: v != options[i][1]))
        options[i] = (name, value)
    else:  # add an option the signer never wrote
        name = data.draw(st.sampled_from(unused))
        options.insert(i, (name, data.draw(OPTION_VALUES[name])))
    return _url(path, [*options, pairs[-1]])


def drop_option(url: str, data: st.DataObject) -> str:
    path, pairs = _pairs(url)
    i = data.draw(st.integers(0, len(pairs) - 1))  # the signature itself too
    return _url(path, pairs[:i] + pairs[i + 1 :])


def reorder(url: str, data: st.DataObject) -> str:
    path, pairs = _pairs(url)
    shuffled = data.draw(st.permutations(pairs))
    if shuffled == pairs:
        shuffled = pairs[1:] + pairs[:1]  # rotate: sig moves or options swap
    return _url(path, shuffled)


def repeat(url: str, data: st.DataObject) -> str:
    path, pairs = _pairs(url)
    i = data.draw(st.integers(0, len(pairs) - 1))
    j = data.draw(st.integers(0, len(pairs)))
    return _url(path, [*pairs[:j], pairs[i], *pairs[j:]])


def change_path(url: str, data: st.DataObject) -> str:
    path, pairs = _pairs(url)
    other = data.draw(
        st.sampled_from(["/v1/render/img_c", "/v1/render/img_a.png", "/v1/render/img_b.jpg"])
    )
    if other == path:
        other = path + "x"
    return _url(other, pairs)


def _with_sig(url: str, sig: str) -> str:
    path, pairs = _pairs(url)
    return _url(path, [*pairs[:-1], ("sig", sig)])


def truncate_sig(url: str, data: st.DataObject) -> str:
    sig = _pairs(url)[1][-1][1]
    return _with_sig(url, sig[: data.draw(st.integers(0, len(sig) - 1))])


def reencode_sig(url: str, data: st.DataObject) -> str:
    sig = _pairs(url)[1][-1][1]
    raw = base64.urlsafe_b64decode(sig + "=" * (-len(sig) % 4))
    forms = [
        sig + "=",  # padded
        base64.b64encode(raw).decode(),  # standard alphabet, padded
        base64.b32encode(raw).decode(),
        raw.hex(),
        sig.upper() if sig.upper() != sig else sig.lower() + "A",
        sig + "A",
        " " + sig,
    ]
    form = data.draw(st.sampled_from(forms))
    if form == sig:
        form = sig + "="
    return _with_sig(url, form)


def flip_sig_bit(url: str, data: st.DataObject) -> str:
    sig = _pairs(url)[1][-1][1]
    raw = bytearray(base64.urlsafe_b64decode(sig + "=" * (-len(sig) % 4)))
    bit = data.draw(st.integers(0, len(raw) * 8 - 1))
    raw[bit // 8] ^= 1 << (bit % 8)
    return _with_sig(url, base64.urlsafe_b64encode(bytes(raw)).rstrip(b"=").decode())


def old_key(url: str, data: st.DataObject) -> str:
    path, pairs = _pairs(url)
    return sign_render_url(_url(path, pairs[:-1]), REMOVED)


def extend_exp(url: str, data: st.DataObject) -> str:
    path, pairs = _pairs(url)
    options = [p for p in pairs[:-1] if p[0] != "exp"]
    exp = data.draw(st.sampled_from([FUTURE + 1, FUTURE * 10, int(NOW) - 10]))
    return _url(path, [*options, ("exp", str(exp)), pairs[-1]])


FORGERIES = [
    change_option,
    drop_option,
    reorder,
    repeat,
    change_path,
    truncate_sig,
    reencode_sig,
    flip_sig_bit,
    old_key,
    extend_exp,
]


@settings(
    max_examples=10_000,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
@given(genuine_urls(), st.sampled_from(FORGERIES), st.data())
def test_no_forged_url_is_accepted(url: str, forge: object, data: st.DataObject) -> None:
    check(url)  # the genuine one is accepted
    forged = forge(url, data)  # type: ignore[operator]
    if forged == url:  # a mutation that changed nothing is not a forgery
        return
    with pytest.raises(ImgpipeError) as caught:
        check(forged)
    assert caught.value.status in (400, 403), (forge, url, forged, caught.value)
