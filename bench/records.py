"""The base of the typed records the harness hashes or stores as JSON (job configs, job uses).

A field that does not apply is None and absent from the dump, never ``null``: the dumps are hashed into job
keys and kept in the store, and a field added later must leave every existing record's dump, and so every
existing job key, as it was.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, SerializerFunctionWrapHandler, model_serializer


class Record(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    @model_serializer(mode="wrap")
    def _absent_when_none(self, handler: SerializerFunctionWrapHandler) -> dict[str, object]:
        dumped: dict[str, object] = handler(self)
        return {k: v for k, v in dumped.items() if v is not None}
