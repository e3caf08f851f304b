"""Output checks of the batch benchmark: the same sizes, SSIM, and colour correctness.

Every method writes OUT/<method key>/<image stem>/<profile>.webp.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchlib import corpus, quality
from benchlib.methods import BenchError, Method, run_method
from benchlib.profiles import PROFILES, QUALITY, Profile, variant_filename

SSIM_TARGET = 0.95
SSIM_GAP_TARGET = 0.01  # SSIM lost beyond what WebP q85 itself costs (see README)
DELTA_E_TARGET = 3.0
INTENTS = ("relative", "perceptual")  # colour-managed references, libvips icc_transform
SOURCE = "source"  # the plain-CMYK file's RGB source photo

Scores = dict[str, dict[str, float]]  # image stem -> {"ssim", "ceiling", "gap"}


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def verdict(ok: bool) -> str:
    return "PASS" if ok else "MISS"


def profile_named(name: str) -> Profile:
    return next(p for p in PROFILES if p.name == name)


def variant(out_root: Path, key: str, stem: str, profile: Profile) -> Path:
    return out_root / key / stem / variant_filename(profile)


def check_dimensions(
    stems: Sequence[str], out_root: Path, keys: Sequence[str]
) -> tuple[list[str], list[str]]:
    """(mismatches, missing outputs): sizes must agree across methods, cover variants must
    fill their box exactly, fit variants must stay inside it."""
    mismatches: list[str] = []
    missing: list[str] = []
    for stem in stems:
        for profile in PROFILES:
            sizes: dict[str, tuple[int, int]] = {}
            for key in keys:
                path = variant(out_root, key, stem, profile)
                if path.exists():
                    sizes[key] = quality.image_size(path)
                else:
                    missing.append(str(path))
            if len(set(sizes.values())) > 1:
                shown = ", ".join(f"{k} {w}x{h}" for k, (w, h) in sizes.items())
                mismatches.append(f"{stem} {profile.name}: {shown}")
            box = (profile.width, profile.height)
            for key, (w, h) in sizes.items():
                bad = (w, h) != box if profile.cover else (w > box[0] or h > box[1])
                if bad:
                    mismatches.append(f"{stem} {profile.name}: {key} {w}x{h} breaks {box}")
    return mismatches, missing


def check_ssim(photos: Sequence[Path], out_root: Path, keys: Sequence[str]) -> dict[str, Scores]:
    """Per method and photo: SSIM of the `large` variant against a float Lanczos reference,
    and the ceiling, the SSIM of that reference itself once rounded and encoded as WebP."""
    large = profile_named("large")
    scores: dict[str, Scores] = {k: {} for k in keys}
    for photo in photos:
        log(f"SSIM reference: {photo.name}")
        reference = quality.ReferenceCache(quality.load_rgb(photo))
        ceilings: dict[tuple[int, int], float] = {}
        for key in keys:
            candidate = quality.load_rgb(variant(out_root, key, photo.stem, large))
            size = (candidate.shape[1], candidate.shape[0])
            exact = reference.at(size)
            if size not in ceilings:
                ceilings[size] = quality.ssim(exact, quality.encoded_like_output(exact, QUALITY))
            value = quality.ssim(exact, candidate)
            scores[key][photo.stem] = {
                "ssim": value,
                "ceiling": ceilings[size],
                "gap": ceilings[size] - value,
            }
    return scores


def _colour_rows(
    name: str, references: dict[str, quality.FloatImage], root: Path, keys: Sequence[str]
) -> list[dict[str, Any]]:
    """One row per method: colour difference of its `medium` variant from each reference;
    imgpipe is judged on the closer of the two colour-managed ones (either intent)."""
    medium = profile_named("medium")
    caches = {ref: quality.ReferenceCache(pixels) for ref, pixels in references.items()}
    rows = []
    for key in keys:
        path = variant(root, key, Path(name).stem, medium)
        candidate = quality.load_rgb(path)
        size = (candidate.shape[1], candidate.shape[0])
        diffs = {
            ref: quality.colour_diff(cache.at(size), candidate) for ref, cache in caches.items()
        }
        row: dict[str, Any] = {
            "file": name,
            "method": key,
            "delta_e76": {ref: d.delta_e76 for ref, d in diffs.items()},
            "mean_abs_rgb": {ref: d.mean_abs_rgb for ref, d in diffs.items()},
            "icc_in_output": quality.has_icc_profile(path),
        }
        if key.startswith("imgpipe"):
            best = min(INTENTS, key=lambda intent: diffs[intent].delta_e76)
            row["judged_against"] = best
            row["target"] = DELTA_E_TARGET
            row["pass"] = diffs[best].delta_e76 < DELTA_E_TARGET
        rows.append(row)
    return rows


def check_colour(
    methods: Sequence[Method], out_root: Path, tmp: Path, errors: list[str]
) -> list[dict[str, Any]]:
    """Colour difference of each method's `medium` variant of the colour test files from
    colour-managed references; a method that fails here is reported in `errors`."""
    files = [corpus.FORMATS / n for n in corpus.COLOUR_FILES if (corpus.FORMATS / n).exists()]
    if not files:
        log(f"colour check skipped: none of {corpus.COLOUR_FILES} in {corpus.FORMATS}")
        return []
    src = tmp / "colour-src"
    staged = corpus.stage(files, src)
    root = out_root / "colour"
    keys = []
    for method in methods:
        log(f"colour run: {method.label}")
        try:
            run_method(method, src, root / method.key, len(staged))
        except BenchError as exc:
            errors.append(f"colour check: {exc}")
            continue
        keys.append(method.key)
    rows: list[dict[str, Any]] = []
    for path in staged:
        references = {intent: quality.managed_srgb(path, intent) for intent in INTENTS}
        if path.name == corpus.COLOUR_FILES[0] and corpus.CMYK_SOURCE_PHOTO.exists():
            references[SOURCE] = quality.load_rgb(corpus.CMYK_SOURCE_PHOTO)
        rows += _colour_rows(path.name, references, root, keys)
    return rows


def ssim_lines(key: str, scores: Scores) -> list[str]:
    if not scores:
        return []
    worst = min(scores, key=lambda stem: scores[stem]["ssim"])
    widest = max(scores, key=lambda stem: scores[stem]["gap"])
    low, gap = scores[worst]["ssim"], scores[widest]["gap"]
    judged = key.startswith("imgpipe")
    low_mark = f"  (target >= {SSIM_TARGET})  {verdict(low >= SSIM_TARGET)}"
    gap_mark = f"  (target <= {SSIM_GAP_TARGET})  {verdict(gap <= SSIM_GAP_TARGET)}"
    return [
        f"min SSIM large  {key:10} {low:.4f}  [{worst}; WebP q{QUALITY} ceiling "
        f"{scores[worst]['ceiling']:.4f}]" + (low_mark if judged else ""),
        f"max SSIM gap    {key:10} {gap:.4f}  [{widest}: ceiling - SSIM]"
        + (gap_mark if judged else ""),
    ]


def colour_lines(rows: list[dict[str, Any]]) -> list[str]:
    refs = [*INTENTS, SOURCE]
    head = f"{'file':34} {'method':10} " + " ".join(f"{'dE76 ' + r:>15}" for r in refs)
    lines = [head + "  icc", "-" * (len(head) + 5)]
    for row in rows:
        values = " ".join(
            f"{row['delta_e76'][r]:15.2f}" if r in row["delta_e76"] else f"{'-':>15}" for r in refs
        )
        mark = ""
        if "pass" in row:
            mark = f"  (< {DELTA_E_TARGET} vs {row['judged_against']})  {verdict(row['pass'])}"
        icc = "yes" if row["icc_in_output"] else "no"
        lines.append(f"{row['file']:34} {row['method']:10} {values}  {icc:3}{mark}".rstrip())
    return lines


def check_lines(results: dict[str, Any]) -> list[str]:
    lines = []
    if "dimensions" in results:
        mismatches = results["dimensions"]["mismatches"]
        lines.append(f"dimensions: {len(mismatches)} mismatch(es)  {verdict(not mismatches)}")
        lines += [f"  {m}" for m in mismatches]
    for key, scores in results.get("ssim", {}).items():
        lines += ssim_lines(key, scores)
    colour = results.get("colour", [])
    if colour:
        block = quality.COLOUR_BLOCK
        lines += [
            "",
            "colour of `medium` vs ICC-managed sRGB with relative or perceptual intent, and vs",
            f"the plain-CMYK file's RGB source photo; means of {block}x{block} blocks:",
            *colour_lines(colour),
        ]
    return lines
