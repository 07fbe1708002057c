"""``/v1/projects/{id}/devices/{deviceId}/credentials``: a device's PSKs.

Shaped like Golioth's credentials API. ``POST`` gives an existing
device a pre-shared key credential: ``identity`` is
``<psk-id>@<project-id>`` (generated when omitted) and ``preSharedKey``
the key as hex digits, 16 to 64 bytes (generated when omitted). The
creation response is the only one that contains the key; listings show
the identity and times. A weak or short key gets 400 ``weak_psk``, a
malformed identity 400 ``invalid_psk_identity``, a taken identity 409.
Every change reaches the gateway of the same process at once.

Unlike Golioth, whose ``preSharedKey`` is the key's text, the key
travels as hex, so that any byte string can be a key. A device that
stores its PSK as a string uses the bytes of that string:
``printf %s "$PSK" | od -An -tx1 | tr -d ' \\n'`` gives their hex.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from typing import Literal

from fastapi import APIRouter
from pydantic import ConfigDict

from fleetgate.api.auth import ScopeDep
from fleetgate.api.context import ApiContext, ContextDep
from fleetgate.api.paging import DEFAULT_PER_PAGE, PageQuery, PerPageQuery, page_of
from fleetgate.api.schemas import ApiModel, Empty, One, Page
from fleetgate.errors import FleetgateError, Reason
from fleetgate.store import psk
from fleetgate.store.psk import IssuedPskCredential, PskCredentialRecord
from fleetgate.store.sealing import KeyEncryptionKey

router = APIRouter(prefix="/v1/projects/{project_id}", tags=["credentials"])

PRE_SHARED_KEY = "PRE_SHARED_KEY"


class Credential(ApiModel):
    """A device's PSK credential, without its key."""

    id: str
    type: Literal["PRE_SHARED_KEY"] = "PRE_SHARED_KEY"
    device_id: str
    identity: str
    created_at: dt.datetime
    last_used_at: dt.datetime | None

    @classmethod
    def of(cls, record: PskCredentialRecord) -> Credential:
        """Render a stored credential."""
        return cls(
            id=record.id,
            device_id=record.device_id,
            identity=record.identity,
            created_at=record.created_at,
            last_used_at=record.last_used_at,
        )


class CreatedCredential(Credential):
    """A credential just created, with its key: shown only in this response.

    ``preSharedKey`` is hex. ``preSharedKeyText`` is the same key as
    text, given when every byte is a printable ASCII character, as
    generated keys are.
    """

    pre_shared_key: str
    pre_shared_key_text: str | None

    @classmethod
    def issued(cls, issued: IssuedPskCredential) -> CreatedCredential:
        """Render a new credential and its key."""
        record = issued.record
        text = issued.key.decode("ascii", "replace")
        printable = text.isascii() and text.isprintable() and "\ufffd" not in text
        return cls(
            id=record.id,
            device_id=record.device_id,
            identity=record.identity,
            created_at=record.created_at,
            last_used_at=record.last_used_at,
            pre_shared_key=issued.key.hex(),
            pre_shared_key_text=text if printable else None,
        )


class CredentialCreate(ApiModel):
    """A PSK credential to add; what is omitted is generated."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {"type": PRE_SHARED_KEY, "identity": "sensor-0001@acme-sensors"},
                {
                    "identity": "sensor-0002@acme-sensors",
                    "preSharedKey": "6f1c0a5e9b7d4f2a8c3e1b0d7a6f5e4c",
                },
            ]
        }
    )

    type: Literal["PRE_SHARED_KEY"] = "PRE_SHARED_KEY"
    identity: str | None = None
    pre_shared_key: str | None = None


@router.post(
    "/devices/{device_id}/credentials", summary="Add a PSK credential to a device"
)
async def create_credential(
    device_id: str, body: CredentialCreate, context: ContextDep, scope: ScopeDep
) -> One[CreatedCredential]:
    """Create a credential; the response is the only one with the key."""
    key = None if body.pre_shared_key is None else psk.decode_psk(body.pre_shared_key)
    kek = _require_key(context)
    issued = await asyncio.to_thread(
        psk.create_psk_credential,
        context.db,
        kek,
        scope.project_id,
        device_id,
        identity=body.identity,
        key=key,
        actor=scope.caller.actor,
    )
    await _changed(context, scope.project_id)
    return One(data=CreatedCredential.issued(issued))


@router.get(
    "/devices/{device_id}/credentials", summary="List a device's PSK credentials"
)
async def list_credentials(
    device_id: str,
    context: ContextDep,
    scope: ScopeDep,
    page: PageQuery = 0,
    per_page: PerPageQuery = DEFAULT_PER_PAGE,
) -> Page[Credential]:
    """Return one page of the device's credentials, oldest first, without keys."""
    records = await asyncio.to_thread(
        psk.list_psk_credentials, context.db, scope.project_id, device_id
    )
    return Page[Credential](
        items=[Credential.of(record) for record in page_of(records, page, per_page)],
        page=page,
        per_page=per_page,
        total=len(records),
    )


@router.get(
    "/devices/{device_id}/credentials/{credential_id}",
    summary="Get a PSK credential",
)
async def get_credential(
    device_id: str, credential_id: str, context: ContextDep, scope: ScopeDep
) -> One[Credential]:
    """Return one credential of the device, without its key."""
    record = await asyncio.to_thread(
        psk.get_psk_credential,
        context.db,
        scope.project_id,
        credential_id,
        device_id=device_id,
    )
    return One(data=Credential.of(record))


@router.delete(
    "/devices/{device_id}/credentials/{credential_id}",
    summary="Delete a PSK credential",
)
async def delete_device_credential(
    device_id: str, credential_id: str, context: ContextDep, scope: ScopeDep
) -> Empty:
    """Remove a credential; new handshakes with it fail at once."""
    await asyncio.to_thread(
        psk.delete_psk_credential,
        context.db,
        scope.project_id,
        credential_id,
        device_id=device_id,
        actor=scope.caller.actor,
    )
    await _changed(context, scope.project_id)
    return Empty()


@router.delete("/credentials/{credential_id}", summary="Delete a PSK credential")
async def delete_credential(
    credential_id: str, context: ContextDep, scope: ScopeDep
) -> Empty:
    """Remove a credential of any device of the project."""
    await asyncio.to_thread(
        psk.delete_psk_credential,
        context.db,
        scope.project_id,
        credential_id,
        actor=scope.caller.actor,
    )
    await _changed(context, scope.project_id)
    return Empty()


def _require_key(context: ApiContext) -> KeyEncryptionKey:
    if context.psk_key is None:
        raise FleetgateError(
            "cannot create a PSK credential: this server has no key-encryption "
            "key to seal it with",
            reason=Reason.PSK_UNREADABLE,
        )
    return context.psk_key


async def _changed(context: ApiContext, project_id: str) -> None:
    # The gateway reloads from the database, so this runs in a thread.
    await asyncio.to_thread(context.psk_changed, project_id)
