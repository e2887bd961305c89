"""Newsletter's routes: schema in, one use case, object out."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import marshmallow as ma
from flask import Response, request
from flask.views import MethodView

from shared.api import (
    API_PREFIX,
    Blueprint,
    PageArgs,
    ensure_storable,
    load_checked,
    page_of,
    page_schema,
)
from shared.app import get_settings
from shared.auth import ADMIN, COORDINATOR, READERS, SERVICE, WRITERS
from shared.db import db_session, utcnow
from shared.errors import DomainError, Invalid

from . import campaigns, digest, schemas, services
from .rendering import render_page

lists_blp = Blueprint("lists", __name__, url_prefix=f"{API_PREFIX}/lists", description="Lists")
subscribers_blp = Blueprint(
    "subscribers", __name__, url_prefix=f"{API_PREFIX}/subscribers", description="Subscribers"
)
campaigns_blp = Blueprint(
    "campaigns", __name__, url_prefix=f"{API_PREFIX}/campaigns", description="Campaigns"
)
bounces_blp = Blueprint(
    "bounces", __name__, url_prefix=f"{API_PREFIX}", description="Bounces and suppressions"
)
digests_blp = Blueprint(
    "digests", __name__, url_prefix=f"{API_PREFIX}/digests", description="Automated newsletters"
)
public_blp = Blueprint(
    "public",
    __name__,
    url_prefix=f"{API_PREFIX}/public",
    description="Public: subscribe, confirm, preferences, one-click unsubscribe (no login)",
)

BOUNCE_SENDERS = (ADMIN, COORDINATOR, SERVICE)


def _public_limit() -> str:
    return get_settings().ratelimit_public


def _page(
    title: str, paragraphs: list[str], form: dict[str, Any] | None = None, status: int = 200
) -> Response:
    return Response(render_page(title, paragraphs, form), status=status, mimetype="text/html")


def _page_or_error(action: Callable[[], Response]) -> Response:
    try:
        return action()
    except DomainError as exc:
        return _page("Das hat nicht geklappt", [exc.detail], status=exc.status)


def _client() -> tuple[str | None, str | None]:
    return request.remote_addr, request.headers.get("User-Agent")


# Lists


@lists_blp.route("")
class Lists(MethodView):
    @lists_blp.auth(READERS)
    @lists_blp.response(200, schemas.ListOutSchema(many=True))
    def get(self) -> Any:
        """All lists."""
        return services.list_lists(db_session())

    @lists_blp.auth(WRITERS)
    @lists_blp.arguments(schemas.ListInSchema)
    @lists_blp.response(201, schemas.ListOutSchema)
    def post(self, data: dict[str, Any]) -> Any:
        """Create a list."""
        return services.create_list(db_session(), **data)


@lists_blp.route("/<uuid:list_id>")
class ListById(MethodView):
    @lists_blp.auth(READERS)
    @lists_blp.response(200, schemas.ListOutSchema)
    def get(self, list_id: uuid.UUID) -> Any:
        """One list."""
        return services.get_list(db_session(), list_id)

    @lists_blp.auth(WRITERS)
    @lists_blp.arguments(schemas.ListPatchSchema)
    @lists_blp.response(200, schemas.ListOutSchema)
    def patch(self, data: dict[str, Any], list_id: uuid.UUID) -> Any:
        """Change a list."""
        return services.update_list(db_session(), list_id, **data)

    @lists_blp.auth(WRITERS)
    @lists_blp.response(204)
    def delete(self, list_id: uuid.UUID) -> None:
        """Delete a list no campaign uses."""
        services.delete_list(db_session(), list_id)


# Subscribers


@subscribers_blp.route("")
class Subscribers(MethodView):
    @subscribers_blp.auth(READERS)
    @subscribers_blp.arguments(schemas.SubscriberArgs, location="query")
    @subscribers_blp.response(200, page_schema(schemas.SubscriberOutSchema))
    def get(self, args: dict[str, Any]) -> Any:
        """Subscribers, optionally of one list and status, or matching an address."""
        items, total = services.list_subscribers(db_session(), **args)
        return page_of(items, total, args["page"], args["per_page"])

    @subscribers_blp.auth(WRITERS)
    @subscribers_blp.arguments(schemas.SubscriberInSchema)
    @subscribers_blp.response(201, schemas.SubscriberOutSchema)
    def post(self, data: dict[str, Any]) -> Any:
        """Add a subscriber, with the consent source stated."""
        return services.create_subscriber(db_session(), **data)


@subscribers_blp.route("/import")
class SubscriberImport(MethodView):
    @subscribers_blp.auth(WRITERS)
    @subscribers_blp.arguments(schemas.ImportInSchema)
    @subscribers_blp.response(200, schemas.ImportOutSchema)
    def post(self, data: dict[str, Any]) -> Any:
        """Import subscribers (JSON rows or CSV text) with a stated consent source."""
        rows = services.parse_csv(data.pop("csv")) if "csv" in data else data.pop("subscribers")
        return services.import_subscribers(db_session(), rows=rows, **data)


@subscribers_blp.route("/<uuid:subscriber_id>")
class SubscriberById(MethodView):
    @subscribers_blp.auth(READERS)
    @subscribers_blp.response(200, schemas.SubscriberDetailSchema)
    def get(self, subscriber_id: uuid.UUID) -> Any:
        """A subscriber with subscriptions and consent records."""
        return services.subscriber_details(db_session(), subscriber_id)

    @subscribers_blp.auth(WRITERS)
    @subscribers_blp.arguments(schemas.SubscriberPatchSchema)
    @subscribers_blp.response(200, schemas.SubscriberOutSchema)
    def patch(self, data: dict[str, Any], subscriber_id: uuid.UUID) -> Any:
        """Change name, organisation or global state (blocklisted ends every subscription)."""
        return services.update_subscriber(db_session(), subscriber_id, **data)

    @subscribers_blp.auth(WRITERS)
    @subscribers_blp.response(204)
    def delete(self, subscriber_id: uuid.UUID) -> None:
        """Erase a subscriber; the address stays on the suppression list."""
        services.delete_subscriber(db_session(), subscriber_id)


# Campaigns


@campaigns_blp.route("")
class Campaigns(MethodView):
    @campaigns_blp.auth(READERS)
    @campaigns_blp.arguments(PageArgs, location="query")
    @campaigns_blp.response(200, page_schema(schemas.CampaignOutSchema))
    def get(self, args: dict[str, Any]) -> Any:
        """Campaigns, newest first."""
        items, total = campaigns.list_campaigns(db_session(), args["page"], args["per_page"])
        return page_of(items, total, args["page"], args["per_page"])

    @campaigns_blp.auth(WRITERS)
    @campaigns_blp.arguments(schemas.CampaignInSchema)
    @campaigns_blp.response(201, schemas.CampaignOutSchema)
    def post(self, data: dict[str, Any]) -> Any:
        """Create a campaign (a draft)."""
        return campaigns.create_campaign(db_session(), **data)


@campaigns_blp.route("/<uuid:campaign_id>")
class CampaignById(MethodView):
    @campaigns_blp.auth(READERS)
    @campaigns_blp.response(200, schemas.CampaignOutSchema)
    def get(self, campaign_id: uuid.UUID) -> Any:
        """One campaign."""
        return campaigns.get_campaign(db_session(), campaign_id)

    @campaigns_blp.auth(WRITERS)
    @campaigns_blp.arguments(schemas.CampaignPatchSchema)
    @campaigns_blp.response(200, schemas.CampaignOutSchema)
    def patch(self, data: dict[str, Any], campaign_id: uuid.UUID) -> Any:
        """Change a draft or scheduled campaign."""
        return campaigns.update_campaign(db_session(), campaign_id, **data)

    @campaigns_blp.auth(WRITERS)
    @campaigns_blp.response(204)
    def delete(self, campaign_id: uuid.UUID) -> None:
        """Delete a campaign that was never sent."""
        campaigns.delete_campaign(db_session(), campaign_id)


@campaigns_blp.route("/<uuid:campaign_id>/test")
class CampaignTest(MethodView):
    @campaigns_blp.auth(WRITERS)
    @campaigns_blp.arguments(schemas.TestSendSchema)
    @campaigns_blp.response(204)
    def post(self, data: dict[str, Any], campaign_id: uuid.UUID) -> None:
        """Send the campaign to one address, as a test."""
        campaigns.test_send(db_session(), get_settings(), campaign_id, data["email"], data["name"])


@campaigns_blp.route("/<uuid:campaign_id>/send")
class CampaignSend(MethodView):
    @campaigns_blp.auth(WRITERS)
    @campaigns_blp.response(202, schemas.CampaignOutSchema)
    def post(self, campaign_id: uuid.UUID) -> Any:
        """Send now (409 if it is sending or sent already)."""
        return campaigns.start_campaign(db_session(), campaign_id)


@campaigns_blp.route("/<uuid:campaign_id>/schedule")
class CampaignSchedule(MethodView):
    @campaigns_blp.auth(WRITERS)
    @campaigns_blp.arguments(schemas.ScheduleSchema)
    @campaigns_blp.response(200, schemas.CampaignOutSchema)
    def post(self, data: dict[str, Any], campaign_id: uuid.UUID) -> Any:
        """Send at a later time."""
        return campaigns.schedule_campaign(db_session(), campaign_id, data["at"])


@campaigns_blp.route("/<uuid:campaign_id>/pause")
class CampaignPause(MethodView):
    @campaigns_blp.auth(WRITERS)
    @campaigns_blp.response(200, schemas.CampaignOutSchema)
    def post(self, campaign_id: uuid.UUID) -> Any:
        """Pause sending (mails in flight finish)."""
        return campaigns.pause_campaign(db_session(), campaign_id)


@campaigns_blp.route("/<uuid:campaign_id>/resume")
class CampaignResume(MethodView):
    @campaigns_blp.auth(WRITERS)
    @campaigns_blp.response(202, schemas.CampaignOutSchema)
    def post(self, campaign_id: uuid.UUID) -> Any:
        """Resume a paused campaign."""
        return campaigns.resume_campaign(db_session(), campaign_id)


@campaigns_blp.route("/<uuid:campaign_id>/cancel")
class CampaignCancel(MethodView):
    @campaigns_blp.auth(WRITERS)
    @campaigns_blp.response(200, schemas.CampaignOutSchema)
    def post(self, campaign_id: uuid.UUID) -> Any:
        """Cancel: no further mail of this campaign goes out."""
        return campaigns.cancel_campaign(db_session(), campaign_id)


@campaigns_blp.route("/<uuid:campaign_id>/progress")
class CampaignProgress(MethodView):
    @campaigns_blp.auth(READERS)
    @campaigns_blp.response(200, schemas.ProgressSchema)
    def get(self, campaign_id: uuid.UUID) -> Any:
        """Progress and stats: sent of total, rate, estimated end, failed, bounced,
        unsubscribed."""
        return campaigns.progress(db_session(), campaign_id)


# Bounces


@bounces_blp.route("/bounces")
class Bounces(MethodView):
    @bounces_blp.auth(BOUNCE_SENDERS)
    @bounces_blp.response(202, schemas.RecordedSchema)
    @bounces_blp.doc(
        requestBody={
            "content": {
                "application/json": {"schema": schemas.BounceJsonSchema},
                "message/rfc822": {"schema": {"type": "string"}},
                "multipart/report": {"schema": {"type": "string"}},
            }
        }
    )
    def post(self) -> Any:
        """Record a bounce: a JSON notification, or a returned mail with a delivery status
        notification (RFC 3464) as message/rfc822 or multipart/report."""
        if request.mimetype == "application/json":
            try:
                data = load_checked(schemas.BounceJsonSchema(), request.get_json(silent=True) or {})
            except ma.ValidationError as exc:
                raise Invalid(exc.normalized_messages()) from exc
            report = services.BounceReport(
                email=data["email"].lower(),
                hard=data["type"] == "hard",
                status=data["status"],
                diagnostic=data["diagnostic"],
            )
            count = services.record_bounces(db_session(), [report], "json", data["campaign_id"])
        else:
            reports = services.parse_dsn(request.get_data())
            count = services.record_bounces(db_session(), reports, "dsn")
        return {"recorded": count}


@bounces_blp.route("/unsubscribe-requests")
class UnsubscribeRequests(MethodView):
    @bounces_blp.auth(BOUNCE_SENDERS)
    @bounces_blp.response(202, schemas.UnsubscribedSchema)
    @bounces_blp.doc(requestBody={"content": {"message/rfc822": {"schema": {"type": "string"}}}})
    def post(self) -> Any:
        """Process a mail that arrived at the ``mailto:`` of List-Unsubscribe (subject
        ``unsubscribe-{campaign}-{token}``): the token's subscriber leaves the campaign's
        lists, as with the one-click link. Fed like bounces, by whatever receives the mail
        for that address."""
        subscriber = services.unsubscribe_by_mail(db_session(), request.get_data())
        return {"subscriber_id": subscriber.id}


@bounces_blp.route("/suppressions")
class Suppressions(MethodView):
    @bounces_blp.auth(READERS)
    @bounces_blp.response(200, schemas.SuppressionOutSchema(many=True))
    def get(self) -> Any:
        """Addresses that get no campaign mail."""
        return services.list_suppressions(db_session())


# Automated newsletters


@digests_blp.route("")
class Digests(MethodView):
    @digests_blp.auth(READERS)
    @digests_blp.response(200, schemas.DigestScheduleOutSchema(many=True))
    def get(self) -> Any:
        """Digest schedules."""
        return digest.list_schedules(db_session())

    @digests_blp.auth(WRITERS)
    @digests_blp.arguments(schemas.DigestScheduleInSchema)
    @digests_blp.response(201, schemas.DigestScheduleOutSchema)
    def post(self, data: dict[str, Any]) -> Any:
        """A monthly digest of upcoming trainings (e.g. first Monday, 9:00 Europe/Berlin)."""
        return digest.create_schedule(db_session(), **data)


@digests_blp.route("/<uuid:schedule_id>/runs")
class DigestRuns(MethodView):
    @digests_blp.auth(READERS)
    @digests_blp.response(200, schemas.DigestRunOutSchema(many=True))
    def get(self, schedule_id: uuid.UUID) -> Any:
        """What each period did: sent (with its campaign) or skipped."""
        return digest.runs_of(db_session(), schedule_id)


@digests_blp.route("/<uuid:schedule_id>/run")
class DigestRunNow(MethodView):
    @digests_blp.auth(WRITERS)
    @digests_blp.response(201, schemas.DigestRunOutSchema)
    def post(self, schedule_id: uuid.UUID) -> Any:
        """Make this month's digest now (sent, or skipped when nothing is new); 409 if this
        month has had its digest."""
        return digest.run_now(db_session(), get_settings(), schedule_id, utcnow())


# Public: no login; pages are German HTML for people who clicked a link in a mail.


@public_blp.route("/subscriptions")
class PublicSubscriptions(MethodView):
    @public_blp.arguments(schemas.PublicSubscribeSchema)
    @public_blp.response(202, schemas.AcceptedSchema)
    def post(self, data: dict[str, Any]) -> Any:
        """Subscribe (double opt-in): a confirmation mail goes to the address."""
        ip, agent = _client()
        services.request_subscription(
            db_session(),
            email_address=data["email"],
            name=data["name"],
            list_ids=data["list_ids"],
            source="form",
            consent_text_version=data["consent_text_version"],
            ip=ip,
            user_agent=agent,
        )
        return {
            "status": "pending",
            "detail": "Bitte bestätigen Sie die Anmeldung mit dem Link in der Mail, die wir "
            "Ihnen geschickt haben.",
        }


@public_blp.route("/subscriptions/confirm")
class PublicConfirm(MethodView):
    @public_blp.page("A German HTML page with the button that confirms")
    def get(self) -> Response:
        """A page with a button that confirms (a link opened by a mail scanner confirms
        nothing)."""
        token = request.args.get("token", "")

        def show() -> Response:
            services.consent_from_link(db_session(), get_settings().secret_key, token)
            return _page(
                "Newsletter-Anmeldung bestätigen",
                ["Bitte bestätigen Sie, dass Sie den Newsletter erhalten möchten."],
                {"action": request.path, "hidden": [("token", token)], "name": None,
                 "lists": [], "button": "Anmeldung bestätigen"},
            )  # fmt: skip

        return _page_or_error(show)

    @public_blp.page("A German HTML page: confirmed")
    def post(self) -> Response:
        """Confirm the subscription."""
        token = request.form.get("token") or request.args.get("token", "")
        ip, agent = _client()

        def confirm() -> Response:
            services.confirm_subscription(db_session(), get_settings().secret_key, token, ip, agent)
            return _page(
                "Vielen Dank!",
                ["Ihre Anmeldung ist bestätigt. Abmelden können Sie sich jederzeit über den "
                 "Link am Ende jeder Ausgabe."],
            )  # fmt: skip

        return _page_or_error(confirm)


@public_blp.route("/unsubscribe/<uuid:campaign_id>/<token>")
class PublicUnsubscribe(MethodView):
    @public_blp.page("A German HTML page with the button that unsubscribes")
    def get(self, campaign_id: uuid.UUID, token: str) -> Response:
        """A page with a button; opening the link changes nothing."""

        def show() -> Response:
            services.subscriber_by_token(db_session(), token)
            return _page(
                "Vom Newsletter abmelden",
                ["Möchten Sie diesen Newsletter nicht mehr erhalten?"],
                {"action": request.path, "hidden": [("List-Unsubscribe", "One-Click")],
                 "name": None, "lists": [], "button": "Abmelden"},
            )  # fmt: skip

        return _page_or_error(show)

    @public_blp.page("A German HTML page: unsubscribed")
    def post(self, campaign_id: uuid.UUID, token: str) -> Response:
        """One-click unsubscribe (RFC 8058): no login, no cookie; repeating it is harmless."""

        def unsubscribe() -> Response:
            services.one_click_unsubscribe(db_session(), campaign_id, token)
            return _page(
                "Sie sind abgemeldet",
                ["Sie erhalten diesen Newsletter nicht mehr. Andere Listen, die Sie bestellt "
                 "haben, bleiben bestehen."],
            )  # fmt: skip

        return _page_or_error(unsubscribe)


@public_blp.route("/preferences")
class PublicPreferences(MethodView):
    @public_blp.page("A German HTML page: the preferences form")
    def get(self) -> Response:
        """The preferences page: name and lists."""
        token = request.args.get("token", "")

        def show() -> Response:
            prefs = services.preferences(db_session(), get_settings().secret_key, token)
            return _page(
                "Ihre Newsletter-Einstellungen",
                [f"Einstellungen für {prefs['email']}"],
                {"action": request.path, "hidden": [("token", token)], "name": prefs["name"],
                 "lists": prefs["lists"], "button": "Speichern",
                 "second_button": "Von allen Listen abmelden",
                 "second_button_name": "unsubscribe_all"},
            )  # fmt: skip

        return _page_or_error(show)

    @public_blp.page("A German HTML page: saved, or the form with what to correct")
    def post(self) -> Response:
        """Save name and lists, or unsubscribe from all lists."""
        token = request.form.get("token", "")
        ip, agent = _client()

        def save() -> Response:
            try:
                list_ids = [uuid.UUID(v) for v in request.form.getlist("lists")]
            except ValueError as exc:
                raise Invalid({"lists": ["Not a list."]}) from exc
            try:
                ensure_storable({"name": request.form.get("name") or ""})
            except ma.ValidationError as exc:
                raise Invalid(exc.normalized_messages()) from exc
            every = bool(request.form.get("unsubscribe_all"))
            services.save_preferences(
                db_session(),
                get_settings().secret_key,
                token,
                name=request.form.get("name"),
                list_ids=list_ids,
                unsubscribe_all=every,
                ip=ip,
                user_agent=agent,
            )
            if every:
                return _page("Sie sind abgemeldet", ["Sie erhalten keinen Newsletter mehr."])
            return _page("Gespeichert", ["Ihre Einstellungen sind gespeichert."])

        return _page_or_error(save)


BLUEPRINTS = (lists_blp, subscribers_blp, campaigns_blp, bounces_blp, digests_blp, public_blp)
RATE_LIMITS = {public_blp: _public_limit}
