"""service.openapi.to_openapi30: JSON Schema 2020-12 constructs -> OpenAPI 3.0."""

from service.openapi import to_openapi30


def test_exclusive_bounds_become_3_0_booleans():
    out = to_openapi30({"type": "number", "exclusiveMinimum": 0.0, "exclusiveMaximum": 5, "maximum": 9})
    assert out == {"type": "number", "minimum": 0.0, "exclusiveMinimum": True, "maximum": 5, "exclusiveMaximum": True}


def test_optional_fields_become_nullable():
    assert to_openapi30({"anyOf": [{"type": "integer", "minimum": 1}, {"type": "null"}], "default": None, "title": "N"}) == {
        "type": "integer", "minimum": 1, "default": None, "title": "N", "nullable": True}
    ref = to_openapi30({"anyOf": [{"$ref": "#/components/schemas/X"}, {"type": "null"}]})
    assert ref == {"allOf": [{"$ref": "#/components/schemas/X"}], "nullable": True}
    # BentoML's flattening keeps only the non-null branch; the null default still marks it
    assert to_openapi30({"type": "array", "items": {"type": "integer"}, "default": None})["nullable"] is True
    assert "nullable" not in to_openapi30({"type": "integer", "default": 3})


def test_nested_const_and_examples():
    doc = {"components": {"schemas": {"A": {"properties": {"k": {"const": "x"}, "n": {"type": "integer", "examples": [4, 5]}}}}}}
    out = to_openapi30(doc)
    props = out["components"]["schemas"]["A"]["properties"]
    assert props["k"] == {"enum": ["x"]} and props["n"] == {"type": "integer", "example": 4}
    assert doc["components"]["schemas"]["A"]["properties"]["k"] == {"const": "x"}  # input untouched


def test_defaults_and_enums_are_data_not_schema():
    out = to_openapi30({"type": "object", "default": {"exclusiveMinimum": 1}, "enum": [{"const": 1}]})
    assert out["default"] == {"exclusiveMinimum": 1} and out["enum"] == [{"const": 1}]


def test_field_names_that_look_like_keywords_are_still_schemas():
    doc = {"type": "object", "properties": {
        "default": {"anyOf": [{"type": "integer"}, {"type": "null"}]},
        "examples": {"type": "number", "exclusiveMinimum": 0},
    }}
    props = to_openapi30(doc)["properties"]
    assert props["default"] == {"type": "integer", "nullable": True}
    assert props["examples"] == {"type": "number", "minimum": 0, "exclusiveMinimum": True}
