"""Device certificates made in-process and registered with the CLI."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from fleetgate.pki import tools

from .conftest import fleetgate


@dataclasses.dataclass(frozen=True)
class DeviceFiles:
    """A device's certificate and key files."""

    certificate_id: str
    cert: Path
    key: Path


def register_fleet(
    data_dir: Path,
    folder: Path,
    project: str,
    certificate_ids: list[str],
    *db_options: str,
) -> list[DeviceFiles]:
    """Create ``project``, register a new root in it, and issue device certificates.

    ``db_options`` are passed to every command, such as
    ``("--database-url", url)``.
    """
    folder.mkdir(parents=True, exist_ok=True)
    root_key, root = tools.make_root()
    tools.write_certificate(folder / "root.pem", root)
    fleetgate(data_dir, "project", "create", project, *db_options)
    fleetgate(
        data_dir,
        "ca",
        "upload",
        "--project",
        project,
        str(folder / "root.pem"),
        *db_options,
    )

    issued = []
    for certificate_id in certificate_ids:
        key = tools.make_device_key()
        csr = tools.make_device_csr(key, project, certificate_id)
        certificate = tools.sign_device_csr(csr, root_key, root)
        files = DeviceFiles(
            certificate_id,
            folder / f"{certificate_id}.pem",
            folder / f"{certificate_id}.key",
        )
        tools.write_certificate(files.cert, certificate)
        tools.write_private_key(files.key, key)
        issued.append(files)
    return issued
