"""The association rule against an in-memory model, with Hypothesis.

Each example runs a random sequence of operations on a fresh project:
pre-provisioning a device by name, connecting with a certificate ID and
disabling a device. The model applies the documented rule (find by
certificate ID, else adopt by name, else create), and afterwards the
store must hold exactly the model's devices. A created device whose
name was taken gets a random suffix, so names are compared with that
suffix removed.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import itertools
import re

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fleetgate.errors import Conflict, DeviceRejected
from fleetgate.provisioning import SUFFIX_HEX_DIGITS, AssociatedDevice, associate
from fleetgate.store.database import Database
from fleetgate.store.devices import create_device, list_devices, set_device_enabled
from fleetgate.store.projects import create_project

NOT_AFTER = dt.datetime(2030, 1, 1, tzinfo=dt.UTC)
FINGERPRINT = "cd" * 32
# Few distinct values, so that sequences often hit the same name or ID.
# None contains "-", so a suffixed name cannot be mistaken for another.
IDENTIFIERS = ("alpha", "beta", "gamma")
SUFFIXED = re.compile(rf"(?P<base>[a-z]+)-[0-9a-f]{{{SUFFIX_HEX_DIGITS}}}")

_projects = itertools.count()


@dataclasses.dataclass
class ModelDevice:
    """A device as the model expects the store to hold it."""

    name: str
    certificate_id: str | None
    enabled: bool = True
    suffixed: bool = False


Operation = tuple[str, str] | tuple[str, int]

operations = st.lists(
    st.one_of(
        st.tuples(st.just("provision"), st.sampled_from(IDENTIFIERS)),
        st.tuples(st.just("connect"), st.sampled_from(IDENTIFIERS)),
        st.tuples(st.just("disable"), st.integers(min_value=0, max_value=5)),
    ),
    max_size=12,
)


class Model:
    """The association rule over a dictionary of devices keyed by ID."""

    def __init__(self) -> None:
        self.devices: dict[str, ModelDevice] = {}

    def name_taken(self, name: str) -> bool:
        return any(device.name == name for device in self.devices.values())

    def expected_connection(self, certificate_id: str) -> str | None:
        """Return the ID of the device a connection must reach, or None to create."""
        for device_id, device in self.devices.items():
            if device.certificate_id == certificate_id:
                return device_id
        for device_id, device in self.devices.items():
            if device.name == certificate_id and device.certificate_id is None:
                return device_id
        return None


def store_view(db: Database, project_id: str) -> dict[str, ModelDevice]:
    """Return the project's devices in the model's terms."""
    view = {}
    for record in list_devices(db, project_id, per_page=100).items:
        match = SUFFIXED.fullmatch(record.name)
        view[record.id] = ModelDevice(
            name=match["base"] if match else record.name,
            certificate_id=record.certificate_id,
            enabled=record.enabled,
            suffixed=match is not None,
        )
    return view


def run(db: Database, project_id: str, steps: list[Operation]) -> Model:
    """Apply ``steps`` to the store and the model alike, checking each result."""
    model = Model()
    for kind, argument in steps:
        if kind == "provision":
            assert isinstance(argument, str)
            provision(db, project_id, model, argument)
        elif kind == "connect":
            assert isinstance(argument, str)
            connect(db, project_id, model, argument)
        elif model.devices:
            assert isinstance(argument, int)
            device_ids = sorted(model.devices)
            device_id = device_ids[argument % len(device_ids)]
            set_device_enabled(db, project_id, device_id, False)
            model.devices[device_id].enabled = False
    return model


def provision(db: Database, project_id: str, model: Model, name: str) -> None:
    if model.name_taken(name):
        with pytest.raises(Conflict):
            create_device(db, project_id, name)
        return
    record = create_device(db, project_id, name)
    model.devices[record.id] = ModelDevice(name=name, certificate_id=None)


def connect(db: Database, project_id: str, model: Model, certificate_id: str) -> None:
    expected = model.expected_connection(certificate_id)
    if expected is not None and not model.devices[expected].enabled:
        with pytest.raises(DeviceRejected):
            associate_once(db, project_id, certificate_id)
        return

    associated = associate_once(db, project_id, certificate_id)

    if expected is not None:
        assert associated.device_id == expected
        assert associated.created is False
        model.devices[expected].certificate_id = certificate_id
        return
    assert associated.created is True
    model.devices[associated.device_id] = ModelDevice(
        name=certificate_id,
        certificate_id=certificate_id,
        suffixed=model.name_taken(certificate_id),
    )


def associate_once(
    db: Database, project_id: str, certificate_id: str
) -> AssociatedDevice:
    return associate(
        db,
        project_id=project_id,
        certificate_id=certificate_id,
        fingerprint=FINGERPRINT,
        not_after=NOT_AFTER,
    )


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(steps=operations)
def test_association_matches_model(database: Database, steps: list[Operation]) -> None:
    # One database for all examples, and a fresh project for each.
    project_id = f"prop-{next(_projects)}"
    create_project(database, project_id)

    model = run(database, project_id, steps)

    assert store_view(database, project_id) == model.devices
