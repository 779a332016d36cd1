from __future__ import annotations

from pydantic import BaseModel

from bench.records import Record


class Inner(BaseModel):
    maybe: int | None = None


class Outer(Record):
    name: str
    optional: int | None = None
    inner: Inner = Inner()


def test_a_field_that_does_not_apply_is_absent_but_nested_nulls_stay() -> None:
    assert Outer(name="a").model_dump(mode="json") == {"name": "a", "inner": {"maybe": None}}
    assert Outer(name="a", optional=0).model_dump()["optional"] == 0
    assert Outer.model_validate(Outer(name="a").model_dump()) == Outer(name="a")
