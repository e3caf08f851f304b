"""The deployment files agree with the Compose Specification and with imgpipe itself.

Static checks only: no Docker engine and no network. The Compose schema is the one
check-jsonschema vendors (``vendor.compose-spec``), read from the installed package.
"""

from __future__ import annotations

import copy
import json
import re
import shlex
import subprocess
import sys
import tomllib
from collections.abc import Mapping, Sequence
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import typer
from ruamel.yaml import YAML
from typer.testing import CliRunner

from imgpipe.api.routes_health import router as health_router
from imgpipe.cli.main import app
from imgpipe.config import Settings

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "compose.yaml"
DOCKERFILE = ROOT / "Dockerfile"
PYPROJECT = ROOT / "pyproject.toml"
DEPLOY_DOC = ROOT / "docs" / "deploy.md"

SCHEMA_PACKAGE = "check_jsonschema.builtin_schemas.vendor"
SCHEMA_FILE = "compose-spec.json"

# The services that run imgpipe itself, and so must each run a command the CLI accepts.
IMGPIPE_SERVICES = frozenset({"api", "worker", "migrate"})
SETTINGS_PREFIX = "IMGPIPE_"
# IMGPIPE_* names imgpipe reads that are not fields of Settings.
NOT_SETTINGS = frozenset({"IMGPIPE_CONFIG"})  # names the TOML settings file


# ---- loading -----------------------------------------------------------------------------


@cache
def compose_text() -> str:
    return COMPOSE.read_text(encoding="utf-8")


def load_compose() -> dict[str, Any]:
    """compose.yaml as Compose reads it: YAML 1.2, anchors and merge keys resolved."""
    document = YAML(typ="safe", pure=True).load(compose_text())
    assert isinstance(document, dict), "compose.yaml is not a mapping"
    return document


def services() -> dict[str, dict[str, Any]]:
    found = load_compose().get("services")
    assert isinstance(found, dict) and found, "compose.yaml defines no services"
    return found


@cache
def compose_schema() -> dict[str, Any]:
    schema_file = resources.files(SCHEMA_PACKAGE).joinpath(SCHEMA_FILE)
    schema = json.loads(schema_file.read_text(encoding="utf-8"))
    assert isinstance(schema, dict)
    return schema


def schema_errors(document: Mapping[str, Any]) -> list[str]:
    schema = compose_schema()
    validator_class = jsonschema.validators.validator_for(schema)
    validator_class.check_schema(schema)
    validator = validator_class(schema, format_checker=validator_class.FORMAT_CHECKER)
    return [
        f"{'/'.join(str(p) for p in error.absolute_path) or '<root>'}: {error.message}"
        for error in validator.iter_errors(document)
    ]


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) in order, continuation lines joined, comments dropped."""
    instructions: list[tuple[str, str]] = []
    pending = ""
    for raw in DOCKERFILE.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        keyword, _, arguments = (pending + line).partition(" ")
        instructions.append((keyword.upper(), arguments.strip()))
        pending = ""
    assert not pending, "the Dockerfile ends inside a continued line"
    return instructions


def dockerfile_args(keyword: str) -> list[str]:
    return [args for kw, args in dockerfile_instructions() if kw == keyword]


def image_entrypoint() -> list[str]:
    entrypoints = dockerfile_args("ENTRYPOINT")
    assert entrypoints, "the Dockerfile sets no ENTRYPOINT"
    entrypoint = json.loads(entrypoints[-1])  # exec form; the last one wins
    assert isinstance(entrypoint, list) and all(isinstance(a, str) for a in entrypoint)
    return entrypoint


def as_argv(value: str | Sequence[str] | None) -> list[str]:
    if value is None:
        return []
    return shlex.split(value) if isinstance(value, str) else [str(v) for v in value]


def imgpipe_image_names() -> set[str]:
    """Images that compose builds from this repository's Dockerfile."""
    names: set[str] = set()
    for service in services().values():
        build = service.get("build")
        if build is None:
            continue
        context, dockerfile = (
            (build, "Dockerfile")
            if isinstance(build, str)
            else (build.get("context", "."), build.get("dockerfile", "Dockerfile"))
        )
        if (ROOT / context / dockerfile).resolve() == DOCKERFILE:
            names.add(str(service.get("image", "")))
    return names


def imgpipe_invocations() -> dict[str, list[str]]:
    """For each service that runs imgpipe, the arguments after ``imgpipe``."""
    ours = imgpipe_image_names()
    found: dict[str, list[str]] = {}
    for name, service in services().items():
        if "entrypoint" in service:
            entrypoint = as_argv(service["entrypoint"])
        elif str(service.get("image", "")) in ours:
            entrypoint = image_entrypoint()
        else:
            entrypoint = []
        argv = entrypoint + as_argv(service.get("command"))
        if argv[:1] == ["imgpipe"]:
            found[name] = argv[1:]
        elif len(argv) >= 3 and argv[1:3] == ["-m", "imgpipe"] and "python" in argv[0]:
            found[name] = argv[3:]
    return found


def environment(service: Mapping[str, Any]) -> dict[str, str | None]:
    env = service.get("environment") or {}
    if isinstance(env, Mapping):
        return {str(k): None if v is None else str(v) for k, v in env.items()}
    pairs = (str(entry).partition("=") for entry in env)
    return {key: (value if sep else None) for key, sep, value in pairs}


def interpolate(value: str) -> str:
    """Compose interpolation, offline: a default where given, else a placeholder."""

    def substitute(match: re.Match[str]) -> str:
        operator, default = match.group(2) or "", match.group(3) or ""
        return default if operator.endswith("-") else "placeholder"

    return re.sub(r"(?<!\$)\$\{(\w+)(:?[-?])?([^}]*)\}", substitute, value).replace("$$", "$")


def unknown_settings(names: set[str]) -> list[str]:
    fields = set(Settings.model_fields)
    return sorted(
        name
        for name in names
        if name not in NOT_SETTINGS and name.removeprefix(SETTINGS_PREFIX).lower() not in fields
    )


def parse_like_the_cli(argv: Sequence[str]) -> None:
    """Parse argv as ``imgpipe`` would, running nothing; raise on any usage error.

    Unlike ``--help``, this converts and checks every value (``--port abc`` and
    ``--concurrency 0`` fail here) as well as option and command names.
    """
    command: Any = typer.main.get_command(app)
    name, tokens, parent = "imgpipe", list(argv), None
    while hasattr(command, "resolve_command"):  # a group: descend to the subcommand
        assert tokens and not tokens[0].startswith("-"), f"no subcommand in {argv!r}"
        context = command.make_context(name, tokens[:1], parent=parent)
        name, command, tokens = command.resolve_command(context, tokens)
        parent = context
    command.make_context(name, tokens, parent=parent, resilient_parsing=False)


def help_exit_code(argv: Sequence[str]) -> int:
    """``imgpipe ARGV --help``: click rejects unknown commands and options before --help."""
    return CliRunner().invoke(app, [*argv, "--help"]).exit_code


# ---- a. the Compose Specification ------------------------------------------------------


def test_compose_file_validates_against_the_compose_spec_schema() -> None:
    assert schema_errors(load_compose()) == []


def test_the_schema_check_rejects_a_misspelt_key() -> None:
    broken = copy.deepcopy(load_compose())
    broken["services"]["api"]["depends_onn"] = broken["services"]["api"].pop("depends_on")
    assert any("depends_onn" in error for error in schema_errors(broken))


def test_check_jsonschema_agrees_offline() -> None:
    """The same vendored schema through check-jsonschema's own command line."""
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "check_jsonschema",
            "--builtin-schema",
            "vendor.compose-spec",
            str(COMPOSE),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


# ---- b. every imgpipe command is one the CLI accepts -------------------------------------


def test_the_imgpipe_services_are_the_ones_expected() -> None:
    assert set(imgpipe_invocations()) == IMGPIPE_SERVICES


@pytest.mark.parametrize("service", sorted(IMGPIPE_SERVICES))
def test_service_command_is_accepted_by_the_cli(service: str) -> None:
    argv = imgpipe_invocations()[service]
    assert argv, f"{service} runs imgpipe without a command"
    assert help_exit_code(argv) == 0, f"imgpipe {shlex.join(argv)} --help failed"
    parse_like_the_cli(argv)


def test_the_cli_checks_catch_bad_commands() -> None:
    assert help_exit_code(["api", "--no-such-option", "0"]) == 2
    assert help_exit_code(["no-such-command"]) == 2
    assert help_exit_code(["db", "no-such-command"]) == 2
    with pytest.raises(typer.BadParameter):
        parse_like_the_cli(["api", "--port", "not-a-number"])
    with pytest.raises(typer.BadParameter):
        parse_like_the_cli(["worker", "--concurrency", "0"])


def test_api_and_worker_start_after_migrations() -> None:
    for name in ("api", "worker"):
        migrate = services()[name]["depends_on"]["migrate"]
        assert migrate == {"condition": "service_completed_successfully"}, name
    assert imgpipe_invocations()["migrate"] == ["db", "upgrade"]


def test_api_healthcheck_probes_a_real_route() -> None:
    probe = " ".join(as_argv(services()["api"]["healthcheck"]["test"]))
    assert "/healthz" in probe
    assert "/healthz" in {getattr(route, "path", None) for route in health_router.routes}


# ---- c. every IMGPIPE_* variable is a real setting ----------------------------------------


def test_every_imgpipe_variable_is_a_setting() -> None:
    """In the services' environment, and anywhere in compose.yaml, Dockerfile, deploy.md."""
    in_services = {
        name
        for service in services().values()
        for name in environment(service)
        if name.startswith(SETTINGS_PREFIX)
    }
    mentioned = {
        name
        for text in (compose_text(), DOCKERFILE.read_text(), DEPLOY_DOC.read_text())
        for name in re.findall(r"\bIMGPIPE_[A-Z0-9_]+", text)
    }
    assert {"IMGPIPE_DATABASE_URL", "IMGPIPE_STORAGE_URL", "IMGPIPE_BROKER_URL"} <= in_services
    assert unknown_settings(in_services | mentioned) == []


def test_the_settings_check_catches_a_typo() -> None:
    assert unknown_settings({"IMGPIPE_DATABASE_URL", "IMGPIPE_DATABSE_URL"}) == [
        "IMGPIPE_DATABSE_URL"
    ]


@pytest.mark.parametrize("service", sorted(IMGPIPE_SERVICES))
def test_service_settings_are_valid_values(service: str) -> None:
    values = {
        name.removeprefix(SETTINGS_PREFIX).lower(): interpolate(value)
        for name, value in environment(services()[service]).items()
        if name.startswith(SETTINGS_PREFIX) and value is not None
    }
    settings = Settings.model_validate(values)
    assert settings.broker_url.startswith("redis://")
    assert settings.database_url.startswith("postgresql+psycopg://")


def test_worker_caps_malloc_arenas() -> None:
    assert environment(services()["worker"]).get("MALLOC_ARENA_MAX") == "2"


# ---- d. the Dockerfile -----------------------------------------------------------------


def test_dockerfile_extras_exist_in_pyproject() -> None:
    with PYPROJECT.open("rb") as fh:
        optional = tomllib.load(fh)["project"].get("optional-dependencies", {})
    installs = [args for args in dockerfile_args("RUN") if "pip install" in args]
    extras = {
        extra.strip()
        for args in installs
        for group in re.findall(r"""(?:^|[\s"'])[\w./-]*\[([\w,.\s-]+)\]""", args)
        for extra in group.split(",")
    }
    assert "s3" in extras, f"the image must install the s3 extra; it installs {extras}"
    assert sorted(extras - set(optional)) == [], "extras missing from pyproject"
    requirements = {
        re.split(r"[\s\[<>=!~;]", requirement, maxsplit=1)[0].lower()
        for extra in extras
        for requirement in optional[extra]
    }
    assert "boto3" in requirements, "s3:// storage needs boto3 in the installed extras"


def test_dockerfile_is_slim_python_non_root_with_imgpipe_entrypoint() -> None:
    bases = [args.split()[0] for args in dockerfile_args("FROM")]
    assert bases and all(base == "python:3.11-slim" for base in bases), bases
    users = dockerfile_args("USER")
    assert users, "the image runs as root"
    assert users[-1].split(":")[0] not in ("root", "0")
    assert image_entrypoint() == ["imgpipe"]


def test_dockerfile_copies_what_the_build_needs() -> None:
    with PYPROJECT.open("rb") as fh:
        readme = tomllib.load(fh)["project"].get("readme")
    copied = {
        source.rstrip("/").removeprefix("./")
        for args in dockerfile_args("COPY")
        if not args.startswith("--from")
        for source in args.split()[:-1]
    }
    needed = {"pyproject.toml", "src"} | ({readme} if isinstance(readme, str) else set())
    assert needed <= copied, f"not copied into the build stage: {needed - copied}"
