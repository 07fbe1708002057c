"""AWS access keys given on the command line, kept in a file of mode 0600.

Without explicit keys the AWS provider uses boto3's standard chain
(environment variables, shared credentials and config files, container
and instance roles). Explicit keys are written to a JSON file under the
data directory, created with mode 0600 inside a folder of mode 0700;
the database stores only the file's path. Every gateway process that
issues for the project must be able to read that path.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import stat
from pathlib import Path

from fleetgate.errors import ProviderFailed

log = logging.getLogger(__name__)

FOLDER_NAME = "provider-credentials"


@dataclasses.dataclass(frozen=True)
class AwsAccessKey:
    """An AWS access key pair; the secret is left out of ``repr``."""

    access_key_id: str
    secret_access_key: str = dataclasses.field(repr=False)
    session_token: str | None = dataclasses.field(default=None, repr=False)


def credentials_path(data_dir: Path, project_id: str) -> Path:
    """Return where the explicit AWS keys of a project are kept."""
    return (data_dir / FOLDER_NAME / f"{project_id}-aws.json").resolve()


def write_access_key(path: Path, key: AwsAccessKey) -> None:
    """Replace the key file at ``path`` with a new one of mode 0600."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    content = json.dumps(
        {
            "aws_access_key_id": key.access_key_id,
            "aws_secret_access_key": key.secret_access_key,
            "aws_session_token": key.session_token,
        }
    ).encode()
    path.unlink(missing_ok=True)
    # O_EXCL creates the file with mode 0600 or fails, so the secret is
    # never readable by others, even briefly, and no symlink is followed.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as file:
        file.write(content)


def read_access_key(path: Path) -> AwsAccessKey:
    """Load the key file at ``path``; raises ProviderFailed when unusable."""
    try:
        mode = path.stat().st_mode
        content = json.loads(path.read_bytes())
    except OSError as exc:
        raise ProviderFailed(
            f"cannot read AWS credentials file {path}: {exc.strerror}; "
            "set the provider again with --access-key-id"
        ) from exc
    except ValueError as exc:
        raise ProviderFailed(
            f"cannot read AWS credentials file {path}: invalid JSON"
        ) from exc
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        log.warning(
            "AWS credentials file is readable by other users path=%s mode=%04o",
            path,
            stat.S_IMODE(mode),
        )
    try:
        return AwsAccessKey(
            access_key_id=str(content["aws_access_key_id"]),
            secret_access_key=str(content["aws_secret_access_key"]),
            session_token=content.get("aws_session_token") or None,
        )
    except (KeyError, TypeError) as exc:
        raise ProviderFailed(
            f"cannot read AWS credentials file {path}: missing {exc}"
        ) from exc
