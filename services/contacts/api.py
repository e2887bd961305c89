"""Contacts' routes: schema in, one use case, object out."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import timedelta
from http import HTTPStatus
from typing import Any

import flask_smorest
import marshmallow as ma
from flask import Response
from flask.views import MethodView
from sqlalchemy.orm import Session

from shared.api import API_PREFIX, Blueprint, page_of
from shared.app import get_settings
from shared.auth import ADMINS, READERS, WRITERS, current_principal, token_revocations
from shared.db import db_session, get_database

from . import schemas, services, tasks
from .services import (
    duplicates,
    exports,
    history,
    imports,
    organisations,
    people,
    premises,
    privacy,
    search,
    suppressions,
    vocab,
)

auth_blp = Blueprint("auth", __name__, url_prefix=f"{API_PREFIX}/auth", description="Staff sign-in")
users_blp = Blueprint(
    "users", __name__, url_prefix=f"{API_PREFIX}/users", description="Staff users"
)


@auth_blp.route("/token")
class Token(MethodView):
    @auth_blp.arguments(schemas.TokenRequestSchema)
    @auth_blp.response(200, schemas.TokenSchema)
    @auth_blp.alt_response(401, response="UNAUTHORIZED")
    def post(self, credentials: dict[str, Any]) -> Any:
        """Exchange email and password for a bearer token (JWT)."""
        settings = get_settings()
        issued = services.issue_user_token(
            db_session(),
            token_revocations(),
            email=credentials["email"],
            password=credentials["password"],
            secret=settings.secret_key,
            ttl=timedelta(seconds=settings.token_ttl_seconds),
        )
        if issued is None:
            flask_smorest.abort(401, message="Wrong email or password, or the account is disabled.")
        return issued


@users_blp.route("")
class Users(MethodView):
    @users_blp.auth(ADMINS)
    @users_blp.response(200, schemas.UserOutSchema(many=True))
    def get(self) -> Any:
        """List staff users."""
        return services.list_users(db_session())

    @users_blp.auth(ADMINS)
    @users_blp.arguments(schemas.UserInSchema)
    @users_blp.response(201, schemas.UserOutSchema)
    @users_blp.alt_response(409, response="CONFLICT")
    def post(self, data: dict[str, Any]) -> Any:
        """Create a staff user."""
        return services.create_user(db_session(), **data)


@users_blp.route("/<uuid:user_id>")
class UserById(MethodView):
    @users_blp.auth(ADMINS)
    @users_blp.response(200, schemas.UserOutSchema)
    def get(self, user_id: uuid.UUID) -> Any:
        """One staff user."""
        return services.get_user(db_session(), user_id)

    @users_blp.auth(ADMINS)
    @users_blp.arguments(schemas.UserPatchSchema)
    @users_blp.response(200, schemas.UserOutSchema)
    @users_blp.alt_response(409, response="CONFLICT")
    def patch(self, data: dict[str, Any], user_id: uuid.UUID) -> Any:
        """Change a user's name, role, password or whether the account is active.

        A new role, a new password or a deactivation voids the user's tokens at once (they
        sign in again); a change that would leave no active admin is a 409."""
        return services.update_user(db_session(), token_revocations(), user_id, **data)


def _actor() -> str:
    principal = current_principal()
    return principal.email or principal.subject


def _page(items_total: tuple[list[Any], int], args: dict[str, Any]) -> dict[str, Any]:
    items, total = items_total
    return page_of(items, total, args["page"], args["per_page"])


register_blp = Blueprint(
    "register",
    __name__,
    url_prefix=API_PREFIX,
    description="The register: organisations, people, premises and their history",
)
vocab_blp = Blueprint(
    "vocabularies", __name__, url_prefix=API_PREFIX, description="Districts and needs (Bedarfe)"
)
search_blp = Blueprint("search", __name__, url_prefix=API_PREFIX, description="Search")
exports_blp = Blueprint(
    "exports", __name__, url_prefix=API_PREFIX, description="CSV and vCard exports"
)
imports_blp = Blueprint(
    "imports", __name__, url_prefix=f"{API_PREFIX}/imports", description="CSV import"
)
privacy_blp = Blueprint(
    "privacy",
    __name__,
    url_prefix=f"{API_PREFIX}/privacy",
    description="Data protection: access, portability and erasure (Art. 15, 20, 17 GDPR)",
)


def _archive_and_history_routes(
    path: str,
    entity: str,
    get: Callable[[Session, uuid.UUID], Any],
    set_archived: Callable[..., Any],
    out_schema: type[ma.Schema],
) -> None:
    """``POST <path>/<id>/archive`` and ``GET <path>/<id>/history``, alike for every record."""

    @register_blp.route(f"{path}/<uuid:record_id>/archive", endpoint=f"{entity}_archive")
    class Archive(MethodView):
        @register_blp.auth(WRITERS)
        @register_blp.arguments(schemas.ArchiveSchema)
        @register_blp.response(200, out_schema)
        def post(self, data: dict[str, Any], record_id: uuid.UUID) -> Any:
            """Archive (``{"archived": true}``) or restore the record; nothing is deleted."""
            return set_archived(db_session(), record_id, data["archived"], actor=_actor())

    @register_blp.route(f"{path}/<uuid:record_id>/history", endpoint=f"{entity}_history")
    class History(MethodView):
        @register_blp.auth(READERS)
        @register_blp.response(200, schemas.ChangeOutSchema(many=True))
        def get(self, record_id: uuid.UUID) -> Any:
            """Who changed what and when, oldest first."""
            get(db_session(), record_id)
            return history.history(db_session(), entity, record_id)


@register_blp.route("/organisations")
class Organisations(MethodView):
    @register_blp.auth(READERS)
    @register_blp.arguments(schemas.OrganisationQueryArgs, location="query")
    @register_blp.response(200, schemas.OrganisationPageSchema)
    def get(self, args: dict[str, Any]) -> Any:
        """List organisations, filtered, sorted (``sort=name``, ``-updated_at`` ...), paginated."""
        return _page(
            organisations.list_organisations(
                db_session(),
                organisation_filter(args),
                page=args["page"],
                per_page=args["per_page"],
            ),
            args,
        )

    @register_blp.auth(WRITERS)
    @register_blp.arguments(schemas.OrganisationInSchema)
    @register_blp.response(201, schemas.OrganisationOutSchema)
    @register_blp.alt_response(409, response="CONFLICT")
    def post(self, data: dict[str, Any]) -> Any:
        """Create an organisation; an address erased on request is refused (409)."""
        return organisations.create_organisation(db_session(), data, actor=_actor())


@register_blp.route("/organisations/<uuid:organisation_id>")
class OrganisationById(MethodView):
    @register_blp.auth(READERS)
    @register_blp.response(200, schemas.OrganisationOutSchema)
    def get(self, organisation_id: uuid.UUID) -> Any:
        """One organisation, with its people."""
        return organisations.get_organisation(db_session(), organisation_id)

    @register_blp.auth(WRITERS)
    @register_blp.arguments(schemas.OrganisationPatchSchema)
    @register_blp.response(200, schemas.OrganisationOutSchema)
    @register_blp.alt_response(409, response="CONFLICT")
    def patch(self, data: dict[str, Any], organisation_id: uuid.UUID) -> Any:
        """Change some fields; send ``version`` to be told (409) about a change meanwhile."""
        version = data.pop("version", None)
        return organisations.update_organisation(
            db_session(), organisation_id, data, actor=_actor(), version=version
        )


@register_blp.route("/people")
class People(MethodView):
    @register_blp.auth(READERS)
    @register_blp.arguments(schemas.PersonQueryArgs, location="query")
    @register_blp.response(200, schemas.PersonPageSchema)
    def get(self, args: dict[str, Any]) -> Any:
        """List people, e.g. those with a role at one organisation."""
        criteria = people.PersonFilter(
            organisation_id=args.get("organisation_id"),
            role=args.get("role", ()),
            email=args.get("email"),
            archived=args["archived"],
            sort=args["sort"] or "last_name",
        )
        return _page(
            people.list_people(
                db_session(), criteria, page=args["page"], per_page=args["per_page"]
            ),
            args,
        )

    @register_blp.auth(WRITERS)
    @register_blp.arguments(schemas.PersonInSchema)
    @register_blp.response(201, schemas.PersonOutSchema)
    @register_blp.alt_response(409, response="CONFLICT")
    def post(self, data: dict[str, Any]) -> Any:
        """Create a person, with roles at organisations; an address erased on request is
        refused (409)."""
        return people.create_person(db_session(), data, actor=_actor())


@register_blp.route("/people/<uuid:person_id>")
class PersonById(MethodView):
    @register_blp.auth(READERS)
    @register_blp.response(200, schemas.PersonOutSchema)
    def get(self, person_id: uuid.UUID) -> Any:
        """One person, with roles."""
        return people.get_person(db_session(), person_id)

    @register_blp.auth(WRITERS)
    @register_blp.arguments(schemas.PersonPatchSchema)
    @register_blp.response(200, schemas.PersonOutSchema)
    @register_blp.alt_response(409, response="CONFLICT")
    def patch(self, data: dict[str, Any], person_id: uuid.UUID) -> Any:
        """Change some fields; ``roles``, when given, replaces all roles."""
        return people.update_person(db_session(), person_id, data, actor=_actor())


def _premises_filter(args: dict[str, Any], status: tuple[str, ...] = ()) -> premises.PremisesFilter:
    criteria = premises.PremisesFilter(
        status=status or tuple(args.get("status", ())),
        district=args.get("district", ()),
        use=args.get("use", ()),
        min_area=args.get("min_area"),
        max_area=args.get("max_area"),
        owner_id=args.get("owner_id"),
        archived=args["archived"],
        sort=args["sort"] or "floor_area",
    )
    return premises.named_filter(db_session(), criteria)


@register_blp.route("/premises")
class PremisesList(MethodView):
    @register_blp.auth(READERS)
    @register_blp.arguments(schemas.PremisesQueryArgs, location="query")
    @register_blp.response(200, schemas.PremisesPageSchema)
    def get(self, args: dict[str, Any]) -> Any:
        """List premises (Gewerbeflächen) by status, district, use and size (m²)."""
        return _page(
            premises.list_premises(
                db_session(), _premises_filter(args), page=args["page"], per_page=args["per_page"]
            ),
            args,
        )

    @register_blp.auth(WRITERS)
    @register_blp.arguments(schemas.PremisesInSchema)
    @register_blp.response(201, schemas.PremisesOutSchema)
    def post(self, data: dict[str, Any]) -> Any:
        """Create premises; the owner is a landlord or a housing company."""
        return premises.create_premises(db_session(), data, actor=_actor())


@register_blp.route("/premises/vacant")
class VacantPremises(MethodView):
    @register_blp.auth(READERS)
    @register_blp.arguments(schemas.PremisesQueryArgs, location="query")
    @register_blp.response(200, schemas.PremisesPageSchema)
    def get(self, args: dict[str, Any]) -> Any:
        """Vacant premises by district, use and size (``min_area`` / ``max_area`` in m²)."""
        return _page(
            premises.list_premises(
                db_session(),
                _premises_filter(args, status=("vacant",)),
                page=args["page"],
                per_page=args["per_page"],
            ),
            args,
        )


@register_blp.route("/premises/<uuid:premises_id>")
class PremisesById(MethodView):
    @register_blp.auth(READERS)
    @register_blp.response(200, schemas.PremisesOutSchema)
    def get(self, premises_id: uuid.UUID) -> Any:
        """One premises."""
        return premises.get_premises(db_session(), premises_id)

    @register_blp.auth(WRITERS)
    @register_blp.arguments(schemas.PremisesPatchSchema)
    @register_blp.response(200, schemas.PremisesOutSchema)
    def patch(self, data: dict[str, Any], premises_id: uuid.UUID) -> Any:
        """Change some fields (e.g. let it: ``status`` and ``tenant_id``)."""
        return premises.update_premises(db_session(), premises_id, data, actor=_actor())


_archive_and_history_routes(
    "/organisations",
    organisations.ENTITY,
    organisations.get_organisation,
    organisations.set_archived,
    schemas.OrganisationOutSchema,
)
_archive_and_history_routes(
    "/people",
    people.ENTITY,
    people.get_person,
    people.set_archived,
    schemas.PersonOutSchema,
)
_archive_and_history_routes(
    "/premises",
    premises.ENTITY,
    premises.get_premises,
    premises.set_archived,
    schemas.PremisesOutSchema,
)


@vocab_blp.route("/districts")
class Districts(MethodView):
    @vocab_blp.auth(READERS)
    @vocab_blp.response(200, schemas.DistrictOutSchema(many=True))
    def get(self) -> Any:
        """The districts of the city, a maintained list."""
        return vocab.list_districts(db_session())

    @vocab_blp.auth(ADMINS)
    @vocab_blp.arguments(schemas.DistrictInSchema)
    @vocab_blp.response(201, schemas.DistrictOutSchema)
    @vocab_blp.alt_response(409, response="CONFLICT")
    def post(self, data: dict[str, Any]) -> Any:
        """Add a district."""
        return vocab.create_district(db_session(), name=data["name"], actor=_actor())


@vocab_blp.route("/districts/<int(max=2147483647):district_id>")  # the column is an integer
class DistrictById(MethodView):
    @vocab_blp.auth(ADMINS)
    @vocab_blp.arguments(schemas.DistrictPatchSchema)
    @vocab_blp.response(200, schemas.DistrictOutSchema)
    def patch(self, data: dict[str, Any], district_id: int) -> Any:
        """Rename a district or retire it (``active: false``)."""
        return vocab.update_district(db_session(), district_id, actor=_actor(), **data)


@vocab_blp.route("/needs")
class Needs(MethodView):
    @vocab_blp.auth(READERS)
    @vocab_blp.response(200, schemas.NeedOutSchema(many=True))
    def get(self) -> Any:
        """The needs vocabulary (Bedarfe)."""
        return vocab.list_needs(db_session())

    @vocab_blp.auth(ADMINS)
    @vocab_blp.arguments(schemas.NeedInSchema)
    @vocab_blp.response(201, schemas.NeedOutSchema)
    @vocab_blp.alt_response(409, response="CONFLICT")
    def post(self, data: dict[str, Any]) -> Any:
        """Add a need; its key is made from the label unless given."""
        return vocab.create_need(db_session(), actor=_actor(), **data)


@vocab_blp.route("/needs/<string:key>")
class NeedByKey(MethodView):
    @vocab_blp.auth(ADMINS)
    @vocab_blp.arguments(schemas.NeedPatchSchema)
    @vocab_blp.response(200, schemas.NeedOutSchema)
    def patch(self, data: dict[str, Any], key: str) -> Any:
        """Relabel a need or retire it (``active: false``)."""
        return vocab.update_need(db_session(), key, actor=_actor(), **data)


@search_blp.route("/search")
class Search(MethodView):
    @search_blp.auth(READERS)
    @search_blp.arguments(schemas.SearchArgs, location="query")
    @search_blp.response(200, schemas.SearchResultSchema)
    def get(self, args: dict[str, Any]) -> Any:
        """Search organisations (name, street, sector, tags, people) and people, ranked.

        Case and accents do not matter (``muller`` finds Müller), ``Str.`` is ``Straße``,
        and every word is a prefix, for type-ahead."""
        hits = search.search(
            get_database(), args["q"], limit=args["limit"], include_archived=args["archived"]
        )
        return {"items": hits}


@register_blp.route("/duplicates")
class Duplicates(MethodView):
    @register_blp.auth(READERS)
    @register_blp.arguments(schemas.DuplicateArgs, location="query")
    @register_blp.response(200, schemas.DuplicateSchema(many=True))
    def get(self, args: dict[str, Any]) -> Any:
        """Organisations that are probably the same: name without legal form and address
        folded (umlauts, Str./Straße), or the same email or phone."""
        return duplicates.candidates(
            db_session(), limit=args["limit"], organisation_id=args.get("organisation_id")
        )


@register_blp.route("/organisations/<uuid:organisation_id>/merge")
class OrganisationMerge(MethodView):
    @register_blp.auth(WRITERS)
    @register_blp.arguments(schemas.MergeSchema)
    @register_blp.response(200, schemas.OrganisationOutSchema)
    def post(self, data: dict[str, Any], organisation_id: uuid.UUID) -> Any:
        """Merge ``other_id`` into this organisation: empty fields filled, tags, needs, people
        and premises moved; the other is archived and its history shows in this one's."""
        return duplicates.merge(db_session(), organisation_id, data["other_id"], actor=_actor())


VCARD = "text/vcard"


def _download(text: str, mimetype: str, filename: str) -> Response:
    return Response(
        text.encode("utf-8"),
        mimetype=mimetype,
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )


@exports_blp.route("/organisations/export.csv")
class OrganisationsCsv(MethodView):
    @exports_blp.auth(READERS)
    @exports_blp.arguments(schemas.OrganisationQueryArgs, location="query")
    @exports_blp.doc(responses={"200": {"description": "The file", "content": {"text/csv": {}}}})
    def get(self, args: dict[str, Any]) -> Any:
        """The filtered list as CSV (UTF-8 with BOM, semicolons); it imports back cleanly."""
        text = exports.organisations_csv(db_session(), organisation_filter(args))
        return _download(text, "text/csv", "organisationen.csv")


@exports_blp.route("/organisations/export.vcf")
class OrganisationsVcards(MethodView):
    @exports_blp.auth(READERS)
    @exports_blp.arguments(schemas.OrganisationQueryArgs, location="query")
    @exports_blp.doc(responses={"200": {"description": "The file", "content": {VCARD: {}}}})
    def get(self, args: dict[str, Any]) -> Any:
        """The filtered list as vCards 4.0."""
        text = exports.organisations_vcards(db_session(), organisation_filter(args))
        return _download(text, VCARD, "organisationen.vcf")


@exports_blp.route("/organisations/<uuid:organisation_id>/vcard")
class OrganisationVcard(MethodView):
    @exports_blp.auth(READERS)
    @exports_blp.doc(responses={"200": {"description": "The file", "content": {VCARD: {}}}})
    def get(self, organisation_id: uuid.UUID) -> Any:
        """One organisation as a vCard 4.0."""
        text = exports.organisation_vcard(db_session(), organisation_id)
        return _download(text, VCARD, f"{organisation_id}.vcf")


@exports_blp.route("/people/export.vcf")
class PeopleVcards(MethodView):
    @exports_blp.auth(READERS)
    @exports_blp.arguments(schemas.PeopleExportArgs, location="query")
    @exports_blp.doc(responses={"200": {"description": "The file", "content": {VCARD: {}}}})
    def get(self, args: dict[str, Any]) -> Any:
        """People (all, or those at one organisation) as vCards 4.0."""
        text = exports.people_vcards(db_session(), args.get("organisation_id"))
        return _download(text, VCARD, "personen.vcf")


@exports_blp.route("/people/<uuid:person_id>/vcard")
class PersonVcard(MethodView):
    @exports_blp.auth(READERS)
    @exports_blp.doc(responses={"200": {"description": "The file", "content": {VCARD: {}}}})
    def get(self, person_id: uuid.UUID) -> Any:
        """One person as a vCard 4.0."""
        return _download(exports.person_vcard(db_session(), person_id), VCARD, f"{person_id}.vcf")


@imports_blp.route("")
class Imports(MethodView):
    @imports_blp.auth(WRITERS)
    @imports_blp.files(schemas.UploadFileSchema)
    @imports_blp.arguments(
        schemas.UploadFormSchema, location="form", content_type="multipart/form-data"
    )
    @imports_blp.response(201, schemas.ImportOutSchema)
    @imports_blp.alt_response(
        202, schema=schemas.ImportOutSchema, description="Large file: checked by a worker"
    )
    @imports_blp.alt_response(413, response=HTTPStatus(413).name)  # its name varies by Python
    def post(self, files: dict[str, Any], form: dict[str, Any]) -> Any:
        """Upload a CSV (multipart ``file``; optional ``mapping``) and get a preview: what a
        commit would create and match, and every invalid row. Nothing is written yet.
        Large files are checked by a worker (202, ``status`` ``checking``): watch the
        import until it is ``previewed``."""
        upload = files["file"]
        record = imports.preview_import(
            db_session(),
            content=upload.read(),
            filename=upload.filename or "",
            mapping=form["mapping"],
            actor=_actor(),
            background=form["background"],
            enqueue=tasks.check_import.delay,
        )
        return record, 202 if record.status == "checking" else 201


@imports_blp.route("/<uuid:import_id>")
class ImportById(MethodView):
    @imports_blp.auth(WRITERS)
    @imports_blp.response(200, schemas.ImportOutSchema)
    def get(self, import_id: uuid.UUID) -> Any:
        """An import's state and progress (``processed_rows`` of ``total_rows``)."""
        return imports.get_import(db_session(), import_id)


@imports_blp.route("/<uuid:import_id>/commit")
class ImportCommit(MethodView):
    @imports_blp.auth(WRITERS)
    @imports_blp.arguments(schemas.ImportCommitSchema)
    @imports_blp.response(200, schemas.ImportOutSchema)
    @imports_blp.alt_response(409, response="CONFLICT")
    def post(self, data: dict[str, Any], import_id: uuid.UUID) -> Any:
        """Write the import: ``all_or_nothing`` (refused while any row is invalid) or
        ``valid_only``. Large files are queued for a worker: watch ``status``."""
        return imports.commit_import(
            db_session(),
            import_id,
            mode=data["mode"],
            background=data["background"],
            actor=_actor(),
            enqueue=tasks.run_import.delay,
        )


@imports_blp.route("/<uuid:import_id>/errors.csv")
class ImportErrors(MethodView):
    @imports_blp.auth(WRITERS)
    @imports_blp.doc(responses={"200": {"description": "The file", "content": {"text/csv": {}}}})
    def get(self, import_id: uuid.UUID) -> Any:
        """The invalid rows as CSV, with line numbers and messages, to fix and upload again."""
        text = imports.error_report(db_session(), import_id)
        return _download(text, "text/csv", "import-fehler.csv")


@privacy_blp.route("/export")
class PrivacyExport(MethodView):
    @privacy_blp.auth(ADMINS)
    @privacy_blp.arguments(schemas.PrivacyExportArgs, location="query")
    @privacy_blp.response(200, schemas.DataExportSchema)
    def get(self, args: dict[str, Any]) -> Any:
        """Everything the register holds about an email address (Art. 15 and 20 GDPR): the
        people with it (fields, roles, history), the organisations that give it as their
        own, uploads that hold it, and whether it is suppressed. Nothing held is an answer
        too: empty lists, not a 404."""
        data = privacy.export(db_session(), args["email"])
        if not args["download"]:
            return data
        name = f"datenauskunft-{data.email_sha256[:12]}.json"  # the address stays out of it
        return data, 200, {"Content-Disposition": f'attachment; filename="{name}"'}


@privacy_blp.route("/erasures")
class Erasures(MethodView):
    @privacy_blp.auth(ADMINS)
    @privacy_blp.arguments(schemas.PrivacyEmailSchema)
    @privacy_blp.response(200, schemas.ErasureOutSchema)
    @privacy_blp.alt_response(409, response="CONFLICT")
    def post(self, data: dict[str, Any]) -> Any:
        """Erase an email address (Art. 17 GDPR), in one transaction: the people with it
        and their roles are deleted, their history keeps who did what and when but not
        what it said of them, organisations that give it lose it, uploads that hold it are
        deleted, and the address is suppressed: the import and the API refuse it from now
        on. Also for an address the register does not hold (all counts 0)."""
        return privacy.erase(db_session(), data["email"], actor=_actor())


@privacy_blp.route("/suppressions")
class Suppressions(MethodView):
    @privacy_blp.auth(ADMINS)
    @privacy_blp.arguments(schemas.PrivacyEmailSchema, location="query")
    @privacy_blp.response(204)
    @privacy_blp.alt_response(404, response="NOT_FOUND")
    def delete(self, args: dict[str, Any]) -> None:
        """Lift the suppression of an address (the person consents again): it may be
        imported and entered again."""
        suppressions.lift(db_session(), args["email"], actor=_actor())


def organisation_filter(args: dict[str, Any]) -> organisations.OrganisationFilter:
    criteria = organisations.OrganisationFilter(
        kind=args.get("kind", ()),
        district=args.get("district", ()),
        status=args.get("status", ()),
        needs=args.get("needs", ()),
        tags=args.get("tags", ()),
        archived=args["archived"],
        sort=args["sort"] or "name",
    )
    return organisations.named_filter(db_session(), criteria)


BLUEPRINTS = (
    auth_blp,
    users_blp,
    register_blp,
    vocab_blp,
    search_blp,
    exports_blp,
    imports_blp,
    privacy_blp,
)
RATE_LIMITS = {auth_blp: "20 per minute"}  # against password guessing
