"""The API base on flask-smorest: OpenAPI document, offline Swagger UI, strict JSON parsing,
problem+json errors and paginated lists."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import flask_smorest
import marshmallow as ma
import swagger_ui_bundle
from flask import Flask, Response, send_from_directory
from flask.typing import ResponseReturnValue
from webargs.flaskparser import FlaskParser
from webargs.multidictproxy import MultiDictProxy
from werkzeug.exceptions import HTTPException, NotFound

from shared.auth import require_roles
from shared.problems import PROBLEM_MIMETYPE, http_exception_problem, problem

API_PREFIX = "/api/v1"
SWAGGER_ASSETS = "/api/docs/assets/"
JSON_MIMETYPES = ("application/json",)


class StrictParser(FlaskParser):
    """JSON bodies must say they are JSON (415 otherwise); malformed JSON is a 400."""

    DEFAULT_VALIDATION_STATUS = 422

    def load_json(self, req: Any, schema: ma.Schema) -> Any:
        has_body = bool(req.content_length) or bool(req.get_data(cache=True))
        if has_body and not (req.mimetype == "application/json" or req.mimetype.endswith("+json")):
            flask_smorest.abort(415, message="Send the body as application/json.")
        return super().load_json(req, schema)

    def _handle_invalid_json_error(
        self, error: Exception, req: Any, *args: Any, **kwargs: Any
    ) -> Any:
        flask_smorest.abort(400, message="The body is not valid JSON.")

    def pre_load(
        self, location_data: Mapping[str, Any], *, schema: ma.Schema, req: Any, location: str
    ) -> Mapping[str, Any]:
        """Text that no PostgreSQL text column can hold (NUL, or a lone surrogate that JSON
        allows but UTF-8 does not) is a 422 naming the field, never a database error."""
        ensure_storable(location_data)
        return location_data


UNSTORABLE_TEXT = "Contains a NUL character or an invalid (unpaired surrogate) character."


def ensure_storable(data: Any) -> None:
    """Raise a ValidationError naming each field whose text no database column can hold;
    for input read without the parser (see :func:`load_checked`)."""
    offending = sorted(set(_unstorable(data)))
    if offending:
        raise ma.ValidationError({field: [UNSTORABLE_TEXT] for field in offending})


def load_checked(schema: ma.Schema, data: Any, **kwargs: Any) -> Any:
    """``schema.load(data)`` for input read without the parser (an HTML form, a body that
    comes in more than one media type), checked first as the parser checks its input."""
    ensure_storable(data)
    return schema.load(data, **kwargs)


def _unstorable(value: Any, path: str = "") -> Iterator[str]:
    """The paths of the strings in ``value`` that cannot be stored as text."""
    if isinstance(value, str):
        if "\x00" in value or (not value.isascii() and _not_utf8(value)):
            yield path or "_schema"
    elif isinstance(value, MultiDictProxy):  # query string or form: every value of a key
        data: Any = value.data
        for key in set(data.keys()):
            items = data.getlist(key) if hasattr(data, "getlist") else [data[key]]
            for item in items:
                yield from _unstorable(item, key)
    elif isinstance(value, Mapping):
        for key, item in value.items():
            yield from _unstorable(item, f"{path}.{key}" if path else str(key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _unstorable(item, f"{path}.{index}" if path else str(index))


def _no_unstorable_path_values(_endpoint: str | None, values: dict[str, Any] | None) -> None:
    """A path value that no database text can hold (a NUL) names nothing: a 404, as an
    unknown key is, before any query sees it."""
    if values and next(_unstorable(values), None) is not None:
        raise NotFound()


def _not_utf8(value: str) -> bool:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


class Blueprint(flask_smorest.Blueprint):
    ARGUMENTS_PARSER = StrictParser()

    def arguments(
        self,
        schema: type[ma.Schema] | ma.Schema,
        *,
        location: str = "json",
        required: bool | None = None,
        **kwargs: Any,
    ) -> Callable[[Any], Any]:
        """As flask-smorest's, but a JSON body none of whose fields is required is documented
        as optional: left out, it is read as ``{}`` (an empty change), and the document
        says so rather than calling for a body the operation does without."""
        if required is None:
            instance = schema() if isinstance(schema, type) else schema
            optional = instance.partial or ()  # True (every field), or the names of some
            required = location != "json" or any(
                field.required and not (optional is True or name in optional)
                for name, field in instance.fields.items()
            )
        return super().arguments(schema, location=location, required=required, **kwargs)

    def auth(self, roles: Iterable[str]) -> Callable[[Any], Any]:
        """Require a bearer token with one of ``roles``, and say so in the OpenAPI document."""
        allowed = tuple(roles)

        def decorator(func: Any) -> Any:
            func = require_roles(allowed)(func)
            func = self.doc(
                security=[{"bearerAuth": []}],
                description=(func.__doc__ or "").strip() + f"\n\nRoles: {', '.join(allowed)}.",
            )(func)
            func = self.alt_response(401, response="UNAUTHORIZED")(func)
            return self.alt_response(403, response="FORBIDDEN")(func)

        return decorator

    def page(self, description: str, json: type[ma.Schema] | None = None) -> Callable[[Any], Any]:
        """An operation that answers a German HTML page (a form, a link in a mail), its errors
        too: documented as ``text/html``, and its errors as a page or as problem+json (to a
        client asking for JSON where the operation offers it, and for a refused rate limit).
        ``json``: the schema of the answer to a client that asks for JSON instead; the
        operation's answer is dumped with it, as ``response`` does, and documented beside
        the page."""
        html = {"schema": {"type": "string"}}
        content: dict[str, Any] = {"text/html": html}
        if json is not None:
            content["application/json"] = {"schema": json}
        document = self.doc(
            responses={
                "200": {"description": description, "content": content},
                "default": {
                    "description": "An error: a German HTML page, or problem+json",
                    "content": {"text/html": html, PROBLEM_MIMETYPE: {"schema": ProblemSchema}},
                },
            }
        )
        if json is None:
            return document
        dumped = self.response(200, json)
        return lambda func: document(dumped(func))

    def files(self, schema: type[ma.Schema] | ma.Schema) -> Callable[[Any], Any]:
        """The files of a multipart body, parsed and checked as ``arguments`` are (a 422
        naming the field), but not documented apart: an operation has one request body,
        documented by its form ``arguments`` (``content_type="multipart/form-data"``),
        whose schema names the file fields as well. (``arguments(location="files")``
        beside them would add an OpenAPI 2 ``formData`` parameter, invalid in 3.0.)"""
        return self.ARGUMENTS_PARSER.use_args(schema, location="files")


class ProblemSchema(ma.Schema):
    """RFC 9457 problem details."""

    type = ma.fields.String()
    title = ma.fields.String()
    status = ma.fields.Integer()
    detail = ma.fields.String()
    instance = ma.fields.String()
    errors = ma.fields.Dict(metadata={"description": "Messages per field"})
    code = ma.fields.String(
        metadata={"description": "Why, for programs: last_admin, suppressed, owner_kind, erased"}
    )
    current_version = ma.fields.Integer(
        metadata={"description": "Of a record changed meanwhile: its version now"}
    )


class Api(flask_smorest.Api):
    ERROR_SCHEMA = ProblemSchema

    def _register_responses(self) -> None:
        """The responses flask-smorest documents for each status (``UNPROCESSABLE_ENTITY``,
        ``DEFAULT_ERROR``, …, all of them errors) as the errors are sent:
        ``application/problem+json``, not ``application/json``."""
        self.DEFAULT_RESPONSE_CONTENT_TYPE = PROBLEM_MIMETYPE
        try:
            super()._register_responses()
        finally:
            del self.DEFAULT_RESPONSE_CONTENT_TYPE

    def handle_http_exception(self, error: HTTPException) -> Response:
        return http_exception_problem(error)


BERLIN = ZoneInfo("Europe/Berlin")
# Times the office gives (a visit's, a training's, a deadline, a consent, a send) fall in
# these years; one outside is a typo ("0224" for "2024"), and before 1893 Berlin's local
# mean time had an offset of seconds, which no ISO 8601 time can write.
YEARS = range(2000, 2100)


class BerlinDateTime(ma.fields.DateTime):
    """Times of every API: ISO 8601 in, in the years 2000 to 2099, one without an offset
    being Europe/Berlin wall time; out in Europe/Berlin with the offset."""

    default_error_messages = {"years": f"Must be in the years {YEARS[0]} to {YEARS[-1]}."}

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> datetime:
        result: datetime = super()._deserialize(value, attr, data, **kwargs)
        if result.tzinfo is None:
            result = result.replace(tzinfo=BERLIN)
        # The year as given first: converting year 1 or 9999 to Berlin time could overflow.
        if result.year not in YEARS or result.astimezone(BERLIN).year not in YEARS:
            raise self.make_error("years")
        return result

    def _serialize(self, value: Any, attr: str | None, obj: Any, **kwargs: Any) -> str | None:
        if value is None:
            return None
        return str(value.astimezone(BERLIN).isoformat())


class Boolean(ma.fields.Boolean):
    """``true`` or ``false``; as text (a query string, a form field) also marshmallow's
    spellings of them (``on``, ``1``, ``yes``, …). A JSON number is no boolean: ``0`` is a
    422, as the OpenAPI document's ``boolean`` says."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> Any:
        if isinstance(value, int | float) and not isinstance(value, bool):
            raise self.make_error("invalid", input=value)
        return super()._deserialize(value, attr, data, **kwargs)


class PageArgs(ma.Schema):
    page = ma.fields.Integer(load_default=1, validate=ma.validate.Range(min=1))
    per_page = ma.fields.Integer(load_default=50, validate=ma.validate.Range(min=1, max=500))


def page_schema(item_schema: type[ma.Schema], name: str | None = None) -> type[ma.Schema]:
    """A list envelope with totals: {items, total, page, per_page, pages}."""
    return ma.Schema.from_dict(
        {
            "items": ma.fields.List(ma.fields.Nested(item_schema)),
            "total": ma.fields.Integer(),
            "page": ma.fields.Integer(),
            "per_page": ma.fields.Integer(),
            "pages": ma.fields.Integer(),
        },
        name=name or f"{item_schema.__name__.removesuffix('Schema')}Page",
    )


def page_of(items: Sequence[Any], total: int, page: int, per_page: int) -> dict[str, Any]:
    return {
        "items": items,
        "total": total,
        "page": page,
        "per_page": per_page,
        "pages": (total + per_page - 1) // per_page,
    }


def init_api(app: Flask, title: str, description: str = "") -> Api:
    app.config.update(
        API_TITLE=title,
        API_VERSION="v1",
        OPENAPI_VERSION="3.0.3",
        OPENAPI_URL_PREFIX="/api",
        OPENAPI_JSON_PATH="v1/openapi.json",
        OPENAPI_SWAGGER_UI_PATH="docs",
        OPENAPI_SWAGGER_UI_URL=SWAGGER_ASSETS,
        API_SPEC_OPTIONS={
            "info": {"description": description},
            "components": {
                "securitySchemes": {
                    "bearerAuth": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}
                }
            },
        },
    )
    api = Api(app)
    app.url_value_preprocessor(_no_unstorable_path_values)
    api.ma_plugin.converter.add_attribute_function(_decimal_bounds_as_numbers)
    app.extensions["quartier.api"] = api

    assets = swagger_ui_bundle.swagger_ui_path

    @app.get(SWAGGER_ASSETS + "<path:filename>")
    def _swagger_assets(filename: str) -> ResponseReturnValue:
        return send_from_directory(assets, filename, max_age=86400)

    return api


_BOUNDS = ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum")


def _decimal_bounds_as_numbers(_converter: Any, field: ma.fields.Field, **kwargs: Any) -> dict:
    """apispec writes the Range of a Decimal field as the field serialises it (a string
    such as ``"0.00"``); an OpenAPI ``number`` needs numbers there."""
    if not isinstance(field, ma.fields.Decimal):
        return {}
    ret: dict[str, Any] = kwargs["ret"]
    return {
        key: float(value)
        for key, value in ret.items()
        if key in _BOUNDS and isinstance(value, str | Decimal)
    }


__all__ = [
    "API_PREFIX",
    "Api",
    "Blueprint",
    "PageArgs",
    "init_api",
    "page_of",
    "page_schema",
    "problem",
]


class PrincipalSchema(ma.Schema):
    subject = ma.fields.String()
    role = ma.fields.String()
    email = ma.fields.String(allow_none=True)


def me_blueprint() -> Blueprint:
    """``GET /api/v1/me``: who the bearer token says the caller is, on every service."""
    from shared.auth import READERS, current_principal

    blp = Blueprint("me", __name__, url_prefix=API_PREFIX, description="The caller's identity")

    @blp.route("/me")
    @blp.auth(READERS)
    @blp.response(200, PrincipalSchema)
    def me() -> Any:
        """The principal of the bearer token."""
        return current_principal()

    return blp
