"""The HTTP client for calls between services: timeouts, retries on idempotent calls, a
service token, and the request id handed on."""

from __future__ import annotations

from typing import Any

import requests
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from shared.auth import service_token
from shared.logs import REQUEST_ID_HEADER, request_id_var
from shared.problems import ServiceUnavailable


class ServiceError(Exception):
    """The other service answered with an error that is not about its availability."""

    def __init__(self, status: int, body: Any) -> None:
        super().__init__(f"service answered {status}")
        self.status = status
        self.body = body


class ServiceClient:
    def __init__(
        self,
        base_url: str,
        *,
        secret: str,
        caller: str,
        connect_timeout: float = 2.0,
        read_timeout: float = 5.0,
        retries: int = 3,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.secret = secret
        self.caller = caller
        self.timeout = (connect_timeout, read_timeout)
        retry = Retry(
            total=retries,
            backoff_factor=0.2,
            status_forcelist=(502, 503, 504),
            allowed_methods=frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"}),
            respect_retry_after_header=True,
            raise_on_status=False,
        )
        self.session = requests.Session()
        self.session.mount("http://", HTTPAdapter(max_retries=retry))
        self.session.mount("https://", HTTPAdapter(max_retries=retry))

    def request(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        headers = dict(kwargs.pop("headers", None) or {})
        headers.setdefault("Authorization", f"Bearer {service_token(self.secret, self.caller)}")
        rid = request_id_var.get()
        if rid:
            headers.setdefault(REQUEST_ID_HEADER, rid)
        try:
            response = self.session.request(
                method, f"{self.base_url}{path}", headers=headers, timeout=self.timeout, **kwargs
            )
        except (requests.ConnectionError, requests.Timeout) as exc:
            raise ServiceUnavailable(f"{self.base_url} cannot be reached.") from exc
        if response.status_code in (502, 503, 504):
            raise ServiceUnavailable(
                f"{self.base_url} is unavailable.",
                retry_after=int(response.headers.get("Retry-After", "5") or 5),
            )
        return response

    def get_json(self, path: str, **params: Any) -> Any:
        response = self.request("GET", path, params=params)
        if response.status_code >= 400:
            raise ServiceError(response.status_code, _body(response))
        return response.json()

    def close(self) -> None:
        self.session.close()


def _body(response: requests.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return response.text
