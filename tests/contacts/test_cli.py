"""``quartier contacts seed-demo``."""

from __future__ import annotations

from click.testing import CliRunner
from flask.testing import FlaskClient

from shared.cli import main


def test_seed_demo_adds_records_once(
    cli_env: dict[str, str], contacts_client: FlaskClient, coordinator: dict[str, str]
) -> None:
    first = CliRunner().invoke(main, ["contacts", "seed-demo"], env=cli_env)
    assert first.exit_code == 0, first.output
    second = CliRunner().invoke(main, ["contacts", "seed-demo"], env=cli_env)
    assert second.exit_code == 0 and "already" in second.output
    found = contacts_client.get(
        "/api/v1/search", query_string={"q": "backerei muller"}, headers=coordinator
    ).get_json()["items"]
    assert [hit["label"] for hit in found].count("Bäckerei Müller") == 1
    vacant = contacts_client.get(
        "/api/v1/premises/vacant?district=Groß Klein", headers=coordinator
    ).get_json()
    assert "Wohnungsgesellschaft Nordwest" in {p["owner_name"] for p in vacant["items"]}
