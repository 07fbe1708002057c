"""Projects: create, get, list."""

from __future__ import annotations

import pytest

from fleetgate.errors import Conflict, InvalidInput, NotFound
from fleetgate.store.database import Database
from fleetgate.store.projects import create_project, get_project, list_projects


def test_create_defaults_name_to_id(database: Database) -> None:
    project = create_project(database, "acme-sensors")
    assert project.id == "acme-sensors"
    assert project.name == "acme-sensors"
    assert project.require_v3 is False
    assert project.created_at.tzinfo is not None


def test_create_stores_name_and_policy(database: Database) -> None:
    create_project(database, "acme", name="Acme Sensors", require_v3=True)
    project = get_project(database, "acme")
    assert project.name == "Acme Sensors"
    assert project.require_v3 is True


@pytest.mark.parametrize(
    "project_id",
    [
        pytest.param("Acme", id="fail/uppercase"),
        pytest.param("-acme", id="fail/leading-dash"),
        pytest.param("", id="fail/empty"),
        pytest.param("a" * 64, id="fail/too-long"),
        pytest.param("acme_sensors", id="fail/underscore"),
    ],
)
def test_create_rejects_invalid_slug(database: Database, project_id: str) -> None:
    with pytest.raises(InvalidInput):
        create_project(database, project_id)
    assert list_projects(database) == []


@pytest.mark.parametrize(
    "name",
    [
        pytest.param("  ", id="fail/blank"),
        pytest.param("n" * 201, id="fail/long"),
        pytest.param("x\x01y", id="fail/control-character"),
        pytest.param("line\nbreak", id="fail/newline"),
        pytest.param("\x1b[31mred", id="fail/escape-sequence"),
    ],
)
def test_create_rejects_invalid_name(database: Database, name: str) -> None:
    with pytest.raises(InvalidInput):
        create_project(database, "acme", name=name)
    assert list_projects(database) == []


def test_create_duplicate_is_conflict(database: Database) -> None:
    create_project(database, "acme")
    with pytest.raises(Conflict, match="'acme'"):
        create_project(database, "acme", name="Other")
    assert get_project(database, "acme").name == "acme"


def test_get_unknown_is_not_found(database: Database) -> None:
    with pytest.raises(NotFound, match="'nobody'"):
        get_project(database, "nobody")


def test_list_is_ordered_by_id(database: Database) -> None:
    for project_id in ("zeta", "alpha", "mid"):
        create_project(database, project_id)
    assert [project.id for project in list_projects(database)] == [
        "alpha",
        "mid",
        "zeta",
    ]
