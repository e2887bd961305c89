"""Visits' routes: schema in, one use case, object out."""

from __future__ import annotations

import uuid
from typing import Any

import marshmallow as ma
from flask import Response, request, url_for
from flask.views import MethodView

from shared.api import API_PREFIX, Blueprint, load_checked, page_of, page_schema
from shared.app import get_settings
from shared.auth import READERS, WRITERS, current_principal
from shared.db import db_session
from shared.errors import DomainError

from . import pages, schemas, services
from .mails import ics_for, public_base

staff_blp = Blueprint(
    "visits", __name__, url_prefix=API_PREFIX, description="Outreach visits and follow-ups"
)
trainings_blp = Blueprint(
    "trainings",
    __name__,
    url_prefix=API_PREFIX,
    description="Trainings and their registrations (staff)",
)
public_blp = Blueprint(
    "public",
    __name__,
    url_prefix=f"{API_PREFIX}/public",
    description="Published trainings and sign-up, without an account (rate-limited)",
)
links_blp = Blueprint(
    "links",
    __name__,
    url_prefix=f"{API_PREFIX}/public",
    description="The links in mails: a German page for people, JSON for clients that ask",
)


def _author() -> dict[str, Any]:
    principal = current_principal()
    return {"staff_subject": principal.subject, "staff_email": principal.email}


# Outreach visits.


@staff_blp.route("/visits")
class Visits(MethodView):
    @staff_blp.auth(READERS)
    @staff_blp.arguments(schemas.VisitQueryArgs, location="query")
    @staff_blp.response(200, page_schema(schemas.VisitOutSchema))
    def get(self, args: dict[str, Any]) -> Any:
        """Visits by district and period (Berlin days, both included), newest first."""
        items, total = services.visits_by_district(
            db_session(),
            district=args.get("district"),
            since=args.get("since"),
            until=args.get("until"),
            page=args["page"],
            per_page=args["per_page"],
        )
        return page_of(items, total, args["page"], args["per_page"])

    @staff_blp.auth(WRITERS)
    @staff_blp.arguments(schemas.VisitInSchema)
    @staff_blp.response(201, schemas.VisitOutSchema)
    def post(self, data: dict[str, Any]) -> Any:
        """Log a visit; the author is the caller."""
        return services.log_visit(db_session(), **_author(), **data)


@staff_blp.route("/visits/quick")
class QuickVisit(MethodView):
    @staff_blp.auth(WRITERS)
    @staff_blp.arguments(schemas.QuickVisitInSchema)
    @staff_blp.response(201, schemas.VisitOutSchema)
    def post(self, data: dict[str, Any]) -> Any:
        """Log a visit from a phone: organisation, channel, one line; the rest later."""
        return services.quick_log(db_session(), **_author(), **data)


@staff_blp.route("/visits/<uuid:visit_id>")
class VisitById(MethodView):
    @staff_blp.auth(READERS)
    @staff_blp.response(200, schemas.VisitOutSchema)
    def get(self, visit_id: uuid.UUID) -> Any:
        """One visit with its follow-ups."""
        return services.get_visit(db_session(), visit_id)

    @staff_blp.auth(WRITERS)
    @staff_blp.arguments(schemas.VisitPatchSchema)
    @staff_blp.response(200, schemas.VisitOutSchema)
    def patch(self, data: dict[str, Any], visit_id: uuid.UUID) -> Any:
        """Complete or correct a visit."""
        return services.update_visit(db_session(), visit_id, **data)


@staff_blp.route("/visits/<uuid:visit_id>/follow-ups")
class VisitFollowUps(MethodView):
    @staff_blp.auth(WRITERS)
    @staff_blp.arguments(schemas.FollowUpInSchema)
    @staff_blp.response(201, schemas.FollowUpOutSchema)
    def post(self, data: dict[str, Any], visit_id: uuid.UUID) -> Any:
        """Add a follow-up (Wiedervorlage) to a visit."""
        author = _author()
        return services.add_follow_up(
            db_session(),
            visit_id,
            default_assignee=author["staff_email"] or author["staff_subject"],
            **data,
        )


@staff_blp.route("/follow-ups")
class FollowUps(MethodView):
    @staff_blp.auth(READERS)
    @staff_blp.arguments(schemas.FollowUpQueryArgs, location="query")
    @staff_blp.response(200, schemas.FollowUpOutSchema(many=True))
    def get(self, args: dict[str, Any]) -> Any:
        """Follow-ups of an assignee (or everyone's): open, overdue, done or all."""
        return services.list_follow_ups(
            db_session(), assignee=args.get("assignee"), state=args["state"]
        )


@staff_blp.route("/follow-ups/by-assignee")
class FollowUpLoad(MethodView):
    @staff_blp.auth(READERS)
    @staff_blp.response(200, schemas.AssigneeLoadSchema(many=True))
    def get(self) -> Any:
        """How many follow-ups each assignee has open, and how many of them are overdue."""
        return services.follow_up_load(db_session())


@staff_blp.route("/follow-ups/<uuid:follow_up_id>")
class FollowUpById(MethodView):
    @staff_blp.auth(WRITERS)
    @staff_blp.arguments(schemas.FollowUpPatchSchema)
    @staff_blp.response(200, schemas.FollowUpOutSchema)
    def patch(self, data: dict[str, Any], follow_up_id: uuid.UUID) -> Any:
        """Mark a follow-up done, or change it."""
        return services.update_follow_up(db_session(), follow_up_id, **data)


@staff_blp.route("/organisations/<uuid:organisation_id>/visits")
class OrganisationTimeline(MethodView):
    @staff_blp.auth(READERS)
    @staff_blp.arguments(schemas.PageArgs, location="query")
    @staff_blp.response(200, page_schema(schemas.VisitOutSchema, "TimelinePage"))
    def get(self, args: dict[str, Any], organisation_id: uuid.UUID) -> Any:
        """An organisation's timeline of visits, newest first."""
        items, total = services.organisation_timeline(
            db_session(), organisation_id, args["page"], args["per_page"]
        )
        return page_of(items, total, args["page"], args["per_page"])


# Trainings (staff).


@trainings_blp.route("/trainings")
class Trainings(MethodView):
    @trainings_blp.auth(READERS)
    @trainings_blp.arguments(schemas.TrainingQueryArgs, location="query")
    @trainings_blp.response(200, page_schema(schemas.TrainingOutSchema))
    def get(self, args: dict[str, Any]) -> Any:
        """Trainings, newest start first, with their seat counts."""
        items, total = services.list_trainings(
            db_session(), status=args.get("status"), page=args["page"], per_page=args["per_page"]
        )
        return page_of(items, total, args["page"], args["per_page"])

    @trainings_blp.auth(WRITERS)
    @trainings_blp.arguments(schemas.TrainingInSchema)
    @trainings_blp.response(201, schemas.TrainingOutSchema)
    def post(self, data: dict[str, Any]) -> Any:
        """Create a training (draft or published). Naive times are Europe/Berlin."""
        return services.create_training(db_session(), **data)


@trainings_blp.route("/trainings/<uuid:training_id>")
class TrainingById(MethodView):
    @trainings_blp.auth(READERS)
    @trainings_blp.response(200, schemas.TrainingOutSchema)
    def get(self, training_id: uuid.UUID) -> Any:
        """One training with its seat counts."""
        return services.get_training(db_session(), training_id)

    @trainings_blp.auth(WRITERS)
    @trainings_blp.arguments(schemas.TrainingPatchSchema)
    @trainings_blp.response(200, schemas.TrainingOutSchema)
    def patch(self, data: dict[str, Any], training_id: uuid.UUID) -> Any:
        """Change a training; ``status`` publishes, cancels (every registrant is told) or
        closes it. Moving time or place raises the calendar SEQUENCE."""
        return services.update_training(db_session(), training_id, **data)


@trainings_blp.route("/trainings/<uuid:training_id>/registrations")
class TrainingRegistrations(MethodView):
    @trainings_blp.auth(READERS)
    @trainings_blp.arguments(schemas.RegistrationQueryArgs, location="query")
    @trainings_blp.response(200, schemas.RegistrationOutSchema(many=True))
    def get(self, args: dict[str, Any], training_id: uuid.UUID) -> Any:
        """The registrations of a training, in the order they came."""
        return services.list_registrations(db_session(), training_id, args.get("status"))


@trainings_blp.route("/registrations/<uuid:registration_id>")
class RegistrationById(MethodView):
    @trainings_blp.auth(READERS)
    @trainings_blp.response(200, schemas.RegistrationOutSchema)
    def get(self, registration_id: uuid.UUID) -> Any:
        """One registration."""
        return services.get_registration(db_session(), registration_id)

    @trainings_blp.auth(WRITERS)
    @trainings_blp.arguments(schemas.AttendanceInSchema)
    @trainings_blp.response(200, schemas.RegistrationOutSchema)
    def patch(self, data: dict[str, Any], registration_id: uuid.UUID) -> Any:
        """Mark attendance, once the training has begun."""
        return services.mark_attendance(db_session(), registration_id, data["attended"])


# Public: no account.


def _public_item(view: services.TrainingView) -> dict[str, Any]:
    base = f"{public_base(get_settings())}{API_PREFIX}/public/trainings/{view.training.id}"
    return {
        **{name: getattr(view.training, name) for name in _PUBLIC_FIELDS},
        "seats_left": view.seats_left,
        "signup_url": f"{base}/signup",
        "ics_url": f"{base}.ics",
    }


_PUBLIC_FIELDS = (
    "id",
    "title",
    "description",
    "topic",
    "starts_at",
    "ends_at",
    "location_name",
    "location_address",
    "trainer",
    "capacity",
    "signup_deadline",
)


@public_blp.route("/trainings")
class PublicTrainings(MethodView):
    @public_blp.arguments(schemas.PageArgs, location="query")
    @public_blp.response(200, page_schema(schemas.PublicTrainingSchema))
    def get(self, args: dict[str, Any]) -> Any:
        """The published upcoming trainings, soonest first."""
        items, total = services.public_trainings(
            db_session(), page=args["page"], per_page=args["per_page"]
        )
        return page_of([_public_item(v) for v in items], total, args["page"], args["per_page"])


@public_blp.route("/trainings/<uuid:training_id>")
class PublicTraining(MethodView):
    @public_blp.response(200, schemas.PublicTrainingSchema)
    def get(self, training_id: uuid.UUID) -> Any:
        """One published (or cancelled, or past) training."""
        return _public_item(services.public_training(db_session(), training_id))


@public_blp.route("/trainings/<uuid:training_id>.ics")
class PublicTrainingCalendar(MethodView):
    @public_blp.response(200, content_type="text/calendar")
    def get(self, training_id: uuid.UUID) -> Any:
        """The training as an iCalendar file (RFC 5545); METHOD:CANCEL once cancelled."""
        view = services.public_training(db_session(), training_id)
        body = ics_for(view.training, get_settings())
        return Response(
            body,
            mimetype="text/calendar",
            headers={"Content-Disposition": 'attachment; filename="schulung.ics"'},
        )


@public_blp.route("/trainings/<uuid:training_id>/registrations")
class PublicSignUp(MethodView):
    @public_blp.arguments(schemas.SignUpInSchema)
    @public_blp.response(202, schemas.SignUpOutSchema)
    @public_blp.alt_response(404, response="NOT_FOUND")
    @public_blp.alt_response(409, response="CONFLICT")
    def post(self, data: dict[str, Any], training_id: uuid.UUID) -> Any:
        """Sign up; a mail with a confirmation link follows (double opt-in). The same
        address again gets the link again and takes no second seat."""
        return services.sign_up(
            db_session(),
            training_id=training_id,
            ip=request.remote_addr,
            user_agent=request.user_agent.string,
            **data,
        )


@public_blp.route("/trainings/<uuid:training_id>/signup")
class PublicSignUpPage(MethodView):
    """The sign-up form for people: the page a digest or website links to."""

    def _page(self, training_id: uuid.UUID, **kwargs: Any) -> Any:
        view = services.public_training(db_session(), training_id)
        return pages.signup_page(
            view.training,
            action_url=url_for("public.PublicSignUpPage", training_id=training_id),
            ics_url=url_for("public.PublicTrainingCalendar", training_id=training_id),
            **kwargs,
        )

    @public_blp.page("A German HTML form")
    def get(self, training_id: uuid.UUID) -> Any:
        """The sign-up form (HTML)."""
        try:
            return self._page(training_id)
        except DomainError as exc:
            return pages.error_page(exc.status, exc.detail)

    @public_blp.page("A German HTML page")
    def post(self, training_id: uuid.UUID) -> Any:
        """Sign up from the form (form-encoded); the same use case as the JSON sign-up."""
        values = request.form.to_dict()
        try:
            data = load_checked(schemas.SignUpInSchema(), values, unknown=ma.EXCLUDE)
        except ma.ValidationError as exc:
            errors = {k: list(v) for k, v in exc.normalized_messages().items()}
            return self._page(training_id, values=values, errors=errors, status=422)
        try:
            services.sign_up(
                db_session(),
                training_id=training_id,
                ip=request.remote_addr,
                user_agent=request.user_agent.string,
                **data,
            )
        except DomainError as exc:
            return pages.error_page(exc.status, exc.detail)
        return self._page(training_id, done=True)


# Links in mails. GET shows a page (mail scanners that prefetch links change nothing);
# the button on it POSTs, and the POST acts. Clients that ask for JSON get JSON.


def _wants_json() -> bool:
    best = request.accept_mimetypes.best_match(
        ["text/html", "application/json", "application/problem+json"]
    )
    return best is not None and best != "text/html"


def _link(token: str, purpose: str, *, act: bool) -> Any:
    settings = get_settings()
    session = db_session()
    try:
        registration_id = services.registration_from_link(settings.secret_key, purpose, token)
        if not act:
            registration = services.check_link(session, purpose, registration_id)
        elif purpose == services.CONFIRM_PURPOSE:
            registration = services.confirm_registration(session, registration_id)
        else:
            registration = services.cancel_registration(session, registration_id)
    except DomainError as exc:
        if _wants_json():
            raise
        return pages.error_page(exc.status, exc.detail)
    if _wants_json():
        return registration
    training_id = registration.training_id
    return pages.link_page(
        purpose,
        registration,
        acted=act,
        action_url=url_for(request.endpoint or "", token=token),
        ics_url=url_for("public.PublicTrainingCalendar", training_id=training_id),
    )


_LINK_PAGE = "A German HTML page; JSON to a client that asks for it"


@links_blp.route("/registrations/<string:token>/confirm")
class ConfirmLink(MethodView):
    @links_blp.page(_LINK_PAGE, schemas.LinkResultSchema)
    def get(self, token: str) -> Any:
        """The page behind the confirmation link, with the button that confirms."""
        return _link(token, services.CONFIRM_PURPOSE, act=False)

    @links_blp.page(_LINK_PAGE, schemas.LinkResultSchema)
    def post(self, token: str) -> Any:
        """Confirm: a seat if one is free, else the waitlist (with the position)."""
        return _link(token, services.CONFIRM_PURPOSE, act=True)


@links_blp.route("/registrations/<string:token>/cancel")
class CancelLink(MethodView):
    @links_blp.page(_LINK_PAGE, schemas.LinkResultSchema)
    def get(self, token: str) -> Any:
        """The page behind the cancel link, with the button that cancels."""
        return _link(token, services.CANCEL_PURPOSE, act=False)

    @links_blp.page(_LINK_PAGE, schemas.LinkResultSchema)
    def post(self, token: str) -> Any:
        """Cancel: frees the seat; the first on the waitlist moves up and is told."""
        return _link(token, services.CANCEL_PURPOSE, act=True)


def _public_limit() -> str:
    return get_settings().ratelimit_public


BLUEPRINTS = (staff_blp, trainings_blp, public_blp, links_blp)
RATE_LIMITS = {public_blp: _public_limit}
