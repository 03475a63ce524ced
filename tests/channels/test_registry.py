"""Channel plugins come from entry points: one that fails is logged and recorded, never fatal; a name is taken
once, and a built-in keeps its own."""

from __future__ import annotations

import dataclasses
from importlib.metadata import Distribution, EntryPoint
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from agrimarket.channels import reference
from agrimarket.channels.reference import ReferencePlugin, default_capabilities
from agrimarket.channels.registry import BUILTIN_DISTRIBUTION, GROUP, load
from agrimarket.errors import NotFound

# What the fake entry points below point at.
good = ReferencePlugin("good")
also_good = ReferencePlugin("good")
impostor = ReferencePlugin("reference")
mislabelled = ReferencePlugin("labelled", capabilities=default_capabilities("other"))
not_a_plugin = object()
blurry = ReferencePlugin(
    "blurry", capabilities=dataclasses.replace(default_capabilities("blurry"), image_rule="lazada")
)


class Broken:
    def __init__(self) -> None:
        raise RuntimeError("the plugin needs ACME_API_KEY")


class Packaged(Distribution):
    """An installed distribution as importlib.metadata reads one, with its entry points bound to it."""

    def __init__(self, name: str, entry_points: dict[str, str]) -> None:
        self._name = name
        self._entry_points = "\n".join([f"[{GROUP}]", *(f"{k} = {v}" for k, v in entry_points.items())])

    def read_text(self, filename: str) -> str | None:
        if filename == "METADATA":
            return f"Metadata-Version: 2.1\nName: {self._name}\nVersion: 1.0\n"
        if filename == "entry_points.txt":
            return self._entry_points
        return None

    def locate_file(self, path: str | Path) -> Path:  # type: ignore[override]
        return Path(path)


def point(name: str, attribute: str) -> EntryPoint:
    return EntryPoint(name, f"{__name__}:{attribute}", GROUP)


def test_a_plugin_that_fails_to_load_is_logged_and_recorded_and_the_others_still_load() -> None:
    points = [
        point("broken", "Broken"),
        EntryPoint("missing", "acme_market_not_installed:plugin", GROUP),
        point("good", "good"),
    ]

    with capture_logs() as logs:
        registry = load(points)

    assert registry.names == ["good"]
    assert registry.get("good") is good
    failures = {failure.entry_point: failure.error for failure in registry.failures}
    assert "RuntimeError: the plugin needs ACME_API_KEY" in failures[f"broken = {__name__}:Broken"]
    assert "ModuleNotFoundError" in failures["missing = acme_market_not_installed:plugin"]
    failed = [entry for entry in logs if entry["event"] == "channel_plugin_failed"]
    assert [entry["entry_point"].split(" = ")[0] for entry in failed] == ["broken", "missing"]
    assert all(entry["log_level"] == "error" for entry in failed)


def test_an_object_that_is_not_a_plugin_is_refused() -> None:
    registry = load([point("thing", "not_a_plugin")])
    assert not registry.names
    [failure] = registry.failures
    assert "not a channel plugin" in failure.error


def test_a_second_plugin_with_a_taken_name_is_refused_and_the_first_kept() -> None:
    registry = load([point("good", "good"), point("good", "also_good")])

    assert registry.get("good") is good
    [failure] = registry.failures
    assert failure.entry_point == f"good = {__name__}:also_good"
    assert "already taken" in failure.error


def test_a_built_in_keeps_its_name_whichever_distribution_comes_first() -> None:
    third_party = Packaged("agrimarket-impostor", {"reference": f"{__name__}:impostor"})
    ours = Packaged(BUILTIN_DISTRIBUTION, {"reference": "agrimarket.channels.reference:plugin"})
    points = [*third_party.entry_points, *ours.entry_points]

    registry = load(points)

    assert registry.get("reference") is reference.plugin
    [failure] = registry.failures
    assert failure.distribution == "agrimarket-impostor"
    assert "already taken by agrimarket" in failure.error


def test_an_entry_point_whose_name_differs_from_the_plugins_is_refused() -> None:
    registry = load([point("acme", "good"), point("labelled", "mislabelled")])

    assert not registry.names
    errors = {failure.entry_point.split(" = ")[0]: failure.error for failure in registry.failures}
    assert "the entry point is called 'acme' but the plugin says it is 'good'" in errors["acme"]
    assert "declares capabilities for 'other'" in errors["labelled"]


def test_a_plugin_asking_for_an_image_rule_the_media_pipeline_does_not_make_is_refused() -> None:
    # Else the engine would quietly send the stored photo instead of the channel's rendition.
    registry = load([point("blurry", "blurry")])

    assert not registry.names
    assert "image rule 'lazada'" in registry.failures[0].error
    assert "lazada.main" in registry.failures[0].error


def test_a_name_outside_the_pattern_is_refused() -> None:
    registry = load([EntryPoint("Good", f"{__name__}:good", GROUP)])
    assert not registry.names
    assert "lower-case" in registry.failures[0].error


def test_an_entry_point_naming_a_plugin_class_is_instantiated() -> None:
    registry = load([EntryPoint("reference", "agrimarket.channels.reference:ReferencePlugin", GROUP)])
    assert isinstance(registry.get("reference"), ReferencePlugin)


def test_the_installed_entry_points_give_the_reference_channel() -> None:
    registry = load()

    assert "reference" in registry
    assert registry.get("reference") is reference.plugin
    assert not [failure for failure in registry.failures if failure.distribution == BUILTIN_DISTRIBUTION]
    with pytest.raises(NotFound, match=r"Channels available here: .*reference"):
        registry.get("no_such_channel")
